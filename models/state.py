"""Last-known device state as cached in Redis, the live-update stream, and the bridge's replies.

Redis layout (Redis is a cache beside PostgreSQL; it can be rebuilt from the database):

* `fleet:state:{device_id}` — a hash, one field per state part (`pos`, `m.<metric>`, `a.<metric>`,
  `quality`, `presence`). Each value is `"<ts_ms>:<boot>:<seq>:<json>"`: the device time and sequence of
  the sample that set it, then the value. The bridge merges field by field, newer device time wins,
  ties broken by (boot, seq), atomically in one Lua script, so a late sample never regresses state.
* `fleet:geo` — a GEO set of the latest position of every device.
* `fleet:live` — a capped stream of live updates read by every API instance. Entry fields:
  `d` (device id), `k` (kind), then state fields under their own names, encoded as in the hash. Kinds:
  `state` (the fields that won the merge), `presence` (the `presence` field alone, when it changed) and
  `correction` (the fields of a late sample that lost the merge because newer values are held: the
  state is not regressed, but live clients learn of the reading). The entry id is the clients' cursor.
  A fourth kind, `event`, carries one newly stored device event in the field `e` (`models.events.StoredEvent`
  as JSON); it is not state and is never conflated (`LIVE_KIND_EVENT`).
* `fleet:seen` — a sorted set: device -> when the bridge last committed telemetry from it (ms).

Presence is the state field `presence`, ordered by server time rather than device time: the retained
`status` a device publishes (`online` on connect, `offline` as its Last Will) decides it, and a device
silent for longer than the presence timeout is marked `offline` by heartbeat until it speaks again.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, Final, Literal

import msgspec

STATE_KEY_PREFIX: Final = "fleet:state:"
GEO_KEY: Final = "fleet:geo"
LIVE_STREAM_KEY: Final = "fleet:live"
LIVE_STREAM_MAXLEN: Final = 100_000
FIELD_POSITION: Final = "pos"
FIELD_QUALITY: Final = "quality"
FIELD_PRESENCE: Final = "presence"
SEEN_KEY: Final = "fleet:seen"
METRIC_PREFIX: Final = "m."
AGGREGATE_PREFIX: Final = "a."
RESERVED_LIVE_FIELDS: Final = frozenset({"d", "k"})
LIVE_KIND_STATE: Final = "state"
LIVE_KIND_PRESENCE: Final = "presence"
LIVE_KIND_CORRECTION: Final = "correction"
LIVE_KINDS: Final = (LIVE_KIND_STATE, LIVE_KIND_PRESENCE, LIVE_KIND_CORRECTION)
LIVE_KIND_EVENT: Final = "event"  # not a state kind: its entry's field `LIVE_EVENT_FIELD` is one stored event
LIVE_EVENT_FIELD: Final = "e"


def state_key(device_id: str) -> str:
    """The Redis hash holding one device's last-known state."""
    return f"{STATE_KEY_PREFIX}{device_id}"


def encode_field(ts_ms: int, boot: int, seq: int, value_json: bytes) -> bytes:
    """Encode one state field as stored in Redis and carried on the live stream."""
    return b"%d:%d:%d:%s" % (ts_ms, boot, seq, value_json)


class FieldValue(msgspec.Struct, frozen=True):
    """One part of a device's state, with the device time and sequence of the sample that set it."""

    value: Any
    ts: datetime
    seq: int
    boot: int = 0


class Aggregate(msgspec.Struct, frozen=True, omit_defaults=True):
    """One second of a high-rate metric: min, max, avg and count; `std` its standard deviation, if sent."""

    min: float
    max: float
    avg: float
    count: int
    std: float | None = None


class PositionState(msgspec.Struct, frozen=True):
    """A device's last known position and when it was measured."""

    lat: float
    lon: float
    ts: datetime
    seq: int
    alt: float | None = None
    speed: float | None = None
    heading: float | None = None
    accuracy: float | None = None


class PresenceState(msgspec.Struct, frozen=True):
    """Whether a device is connected, since when (server clock), and what decided it.

    Stored as the state field `presence`; its ordering time is when the bridge learnt it, except for a
    retained status replayed on subscribe, which is ordered first so that it only fills a gap.
    """

    state: Literal["online", "offline"]
    source: Literal["status", "heartbeat"]
    since: datetime


class DeviceState(msgspec.Struct, frozen=True):
    """A device's last-known state, merged from every sample seen, newest value per field."""

    device_id: str
    ts: datetime | None
    position: PositionState | None = None
    metrics: dict[str, FieldValue] = {}
    aggregates: dict[str, FieldValue] = {}
    quality: FieldValue | None = None
    presence: PresenceState | None = None


def decode_field(raw: bytes | str) -> FieldValue:
    """Decode one stored state field."""
    data = raw.encode() if isinstance(raw, str) else raw
    ts_ms, boot, seq, value = data.split(b":", 3)
    return FieldValue(
        value=msgspec.json.decode(value),
        ts=datetime.fromtimestamp(int(ts_ms) / 1000, UTC),
        seq=int(seq),
        boot=int(boot),
    )


def state_from_fields(
    device_id: str, fields: Mapping[bytes, bytes] | Mapping[str, str] | Mapping[str, bytes]
) -> DeviceState:
    """Build a `DeviceState` from a state hash (or the changed fields of a live update)."""
    position: PositionState | None = None
    metrics: dict[str, FieldValue] = {}
    aggregates: dict[str, FieldValue] = {}
    quality: FieldValue | None = None
    presence: PresenceState | None = None
    latest: datetime | None = None
    for raw_name, raw_value in fields.items():
        name = raw_name.decode() if isinstance(raw_name, bytes) else raw_name
        if name in RESERVED_LIVE_FIELDS:
            continue
        field = decode_field(raw_value)
        if name == FIELD_PRESENCE:
            # Server time, not device time: it does not move the state's `ts`.
            presence = msgspec.convert(field.value, PresenceState)
            continue
        latest = field.ts if latest is None or field.ts > latest else latest
        if name == FIELD_POSITION:
            position = PositionState(ts=field.ts, seq=field.seq, **field.value)
        elif name == FIELD_QUALITY:
            quality = field
        elif name.startswith(METRIC_PREFIX):
            metrics[name[len(METRIC_PREFIX) :]] = field
        elif name.startswith(AGGREGATE_PREFIX):
            aggregates[name[len(AGGREGATE_PREFIX) :]] = field
    return DeviceState(device_id, latest, position, metrics, aggregates, quality, presence)


class PersistedRange(msgspec.Struct, frozen=True, array_like=True):
    """Samples `first..last` (inclusive) of boot `boot`: on the wire `[boot, first, last]`."""

    boot: int
    first: int
    last: int


class Persisted(msgspec.Struct, frozen=True, omit_defaults=True):
    """Published on `fleet/v1/{id}/persisted` after COMMIT: the firmware may free exactly these.

    `ranges` are telemetry samples, `events` the events of `fleet/v1/{id}/events` (left out when none):
    a device may count both with one seq or with two, and never mistakes one for the other.
    """

    ranges: list[PersistedRange]
    committed_at: datetime
    events: list[PersistedRange] = []


DATABASE_REFUSAL: Final = "database refused: "
"""How the reason of a message the database refused whole begins (a dead letter after COMMIT failed)."""


class RejectedNotice(msgspec.Struct, frozen=True, omit_defaults=True):
    """Published on `fleet/v1/{id}/rejected`: why a message or one of its samples was refused.

    `sha256` is the hex SHA-256 of the whole refused payload: a device can match a refusal to what it
    sent even when the message had no readable seq, and the REST listing of refusals shows the same digest.
    """

    reason: str
    topic: str
    received_at: datetime
    index: int | None = None
    seq: int | None = None
    boot: int | None = None
    sha256: str | None = None


def seq_ranges(pairs: list[tuple[int, int]]) -> list[PersistedRange]:
    """Collapse (boot, seq) pairs into sorted inclusive ranges; duplicates collapse too."""
    ranges: list[PersistedRange] = []
    for boot, seq in sorted(set(pairs)):
        if ranges and ranges[-1].boot == boot and ranges[-1].last + 1 == seq:
            last = ranges[-1]
            ranges[-1] = PersistedRange(boot, last.first, seq)
        else:
            ranges.append(PersistedRange(boot, seq, seq))
    return ranges
