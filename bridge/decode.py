"""Decode and validate one MQTT message into database rows, state updates and rejections.

Pure: the clock is an argument. A bad sample is rejected alone; its good neighbours go on.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Final, Literal, TypeVar

import msgspec

from bridge.message import RawMessage
from models import topics
from models.commands import RESULT_MAX_BYTES, CommandAck, is_command_id
from models.events import Event, Status, decode_event
from models.firmware import OtaProgress
from models.state import (
    AGGREGATE_PREFIX,
    FIELD_POSITION,
    FIELD_PRESENCE,
    FIELD_QUALITY,
    METRIC_PREFIX,
    PresenceState,
    encode_field,
)
from models.telemetry import (
    METRIC_COLUMNS,
    DecodedTelemetry,
    Limits,
    MessageRejection,
    Sample,
    decode_telemetry,
)

# Typed columns of `telemetry`, in COPY order; metrics without a column go to `extra`.
TELEMETRY_COLUMNS: Final = (
    "ts",
    "received_at",
    "seq",
    "lat",
    "lon",
    "odometer",
    "boot",
    "alt",
    "speed",
    "heading",
    "accuracy",
    "fuel",
    "engine_temp",
    "temperature",
    "pressure",
    "vibration",
    "flow",
    "level",
    "battery",
    "quality",
    "device_id",
    "extra",
    "agg",
)
TELEMETRY_TYPES: Final = (
    "timestamptz",
    "timestamptz",
    "int8",
    "float8",
    "float8",
    "float8",
    "int4",
    "float4",
    "float4",
    "float4",
    "float4",
    "float4",
    "float4",
    "float4",
    "float4",
    "float4",
    "float4",
    "float4",
    "float4",
    "int2",
    "text",
    "jsonb",
    "jsonb",
)
# Metric name -> index of its typed column in a telemetry row.
METRIC_INDEX: Final = {name: TELEMETRY_COLUMNS.index(name) for name in METRIC_COLUMNS}
_EXTRA = TELEMETRY_COLUMNS.index("extra")
_AGG = TELEMETRY_COLUMNS.index("agg")

# MQTT 5 PUBACK reason for a message refused whole (kept in the dead-letter table all the same).
PAYLOAD_FORMAT_INVALID: Final = 0x99
# At most 4 bytes a character: a refused topic this long still fits a btree index row (see `_storable_topic`).
DEAD_LETTER_TOPIC_MAX_CHARS: Final = 512

TelemetryRow = tuple[Any, ...]
_json = msgspec.json.Encoder()
_STATUS = msgspec.json.Decoder(Status)
_ACK = msgspec.json.Decoder(CommandAck)
_OTA = msgspec.json.Decoder(OtaProgress)
OTA_MAX_BYTES: Final = 2048


@dataclass(frozen=True, slots=True)
class Rejection:
    """A message, or one sample of it, refused with a reason; becomes a dead-letter row."""

    topic: str
    device_id: str | None
    reason: str
    payload: bytes
    received_at: datetime
    index: int = -1
    seq: int | None = None
    boot: int | None = None


@dataclass(frozen=True, slots=True)
class PresenceUpdate:
    """A device's presence as one message establishes it."""

    device_id: str
    state: Literal["online", "offline"]
    source: Literal["status", "heartbeat"]
    since: datetime
    order_ms: int  # newer wins; 1 for a retained replay

    def field(self) -> bytes:
        """The encoded `presence` state field."""
        value = PresenceState(state=self.state, source=self.source, since=self.since)
        return encode_field(self.order_ms, 0, 0, _json.encode(value))


@dataclass(slots=True)
class Decoded:
    """Everything one message contributes to a batch."""

    device_id: str | None
    topic: str
    payload: bytes
    received_at: datetime
    rows: list[TelemetryRow] = field(default_factory=list)
    keys: list[tuple[int, int]] = field(default_factory=list)  # (boot, seq) of each row
    samples: list[Sample] = field(default_factory=list)
    presence: PresenceUpdate | None = None
    rejections: list[Rejection] = field(default_factory=list)
    readings: int = 0
    events: list[Event] = field(default_factory=list)  # from `fleet/v1/{id}/events`: one per message
    ack: CommandAck | None = None  # from `fleet/v1/{id}/cmd/ack`
    ota: OtaProgress | None = None  # from `fleet/v1/{id}/ota`

    @property
    def refused_whole(self) -> bool:
        """True when nothing of the message was accepted."""
        return (
            not self.rows
            and not self.events
            and self.presence is None
            and self.ack is None
            and self.ota is None
            and bool(self.rejections)
        )

    @property
    def stored(self) -> bool:
        """True when the message brought rows to store: samples or an event (a sign of life of its device)."""
        return bool(self.rows or self.events)

    def refusal_summary(self) -> str:
        """Why the message was refused, in one line: its one reason, or the first of its samples' reasons."""
        first = self.rejections[0]
        if len(self.rejections) == 1:
            return first.reason if first.index < 0 else f"sample {first.index}: {first.reason}"
        return f"all {len(self.rejections)} samples refused; sample {first.index}: {first.reason}"


def decode_message(message: RawMessage, *, now: datetime, limits: Limits) -> Decoded:
    """Turn one received message into rows, state updates and rejections."""
    try:
        topic = topics.parse(message.topic)
    except topics.TopicError as exc:
        return _refuse(replace(message, topic=_storable_topic(message.topic)), None, str(exc))
    if topic.kind is topics.TopicKind.STATUS:
        return _presence(message, topic.device_id)
    if topic.kind is topics.TopicKind.EVENTS:
        return _event(message, topic.device_id, now=now, limits=limits)
    if topic.kind is topics.TopicKind.CMD_ACK:
        return _command_ack(message, topic.device_id)
    if topic.kind is topics.TopicKind.OTA:
        return _ota_progress(message, topic.device_id)
    if topic.kind is not topics.TopicKind.TELEMETRY:
        return _refuse(message, topic.device_id, f"the bridge does not ingest {topic.kind.value!r} here")
    result = decode_telemetry(
        message.payload, content_type=message.content_type, now=now, limits=limits, device_id=topic.device_id
    )
    if isinstance(result, MessageRejection):
        return _refuse(message, topic.device_id, result.reason)
    return _accept(message, topic.device_id, result)


def _presence(message: RawMessage, device_id: str) -> Decoded:
    """A device's status: `online`/`offline` as JSON (`models.events.Status`) or as plain text."""
    text = message.payload.strip()
    if not text:
        # An empty retained message clears the topic (a decommissioned device): nothing to record.
        return Decoded(device_id, message.topic, message.payload, message.received_at)
    stated_at: datetime | None = None
    state: Literal["online", "offline"]
    if text in (b"online", b"offline"):
        state = "online" if text == b"online" else "offline"
    else:
        try:
            status = _STATUS.decode(message.payload)
        except msgspec.DecodeError as exc:
            return _refuse(message, device_id, f"invalid status: {exc}")
        except RecursionError:
            # msgspec recurses once per level of nesting, even through an unknown field it skips.
            return _refuse(message, device_id, "invalid status: nested too deeply")
        state, stated_at = status.state, status.ts
    since = (stated_at or message.received_at) if message.retain else message.received_at
    # A retained status replayed on subscribe is old news: ordered first, it only fills a gap.
    order_ms = 1 if message.retain else int(message.received_at.timestamp() * 1000)
    update = PresenceUpdate(device_id, state, "status", since, order_ms)
    return Decoded(device_id, message.topic, message.payload, message.received_at, presence=update)


def _event(message: RawMessage, device_id: str, *, now: datetime, limits: Limits) -> Decoded:
    """A device event (`models.events.Event`): stored whole, or refused whole with the reason."""
    event = decode_event(message.payload, content_type=message.content_type, now=now, limits=limits)
    if isinstance(event, MessageRejection):
        return _refuse(message, device_id, event.reason)
    return Decoded(device_id, message.topic, message.payload, message.received_at, events=[event])


def _command_ack(message: RawMessage, device_id: str) -> Decoded:
    """A device's answer to a command (`models.commands.CommandAck`): recorded, or refused with the reason."""
    ack = _command_report(message, _ACK, "command acknowledgement", RESULT_MAX_BYTES)
    if isinstance(ack, str):
        return _refuse(message, device_id, ack)
    return Decoded(device_id, message.topic, message.payload, message.received_at, ack=ack)


def _ota_progress(message: RawMessage, device_id: str) -> Decoded:
    """A device's progress with a firmware update (`models.firmware.OtaProgress`), or its refusal."""
    progress = _command_report(message, _OTA, "update progress report", OTA_MAX_BYTES)
    if isinstance(progress, str):
        return _refuse(message, device_id, progress)
    return Decoded(device_id, message.topic, message.payload, message.received_at, ota=progress)


_Report = TypeVar("_Report", CommandAck, OtaProgress)


def _command_report(
    message: RawMessage, decoder: msgspec.json.Decoder[_Report], what: str, max_bytes: int
) -> _Report | str:
    """A device's JSON report about one of its commands, or why it is refused: too large, not the type,
    a command id that is not one, a time without a zone."""
    if len(message.payload) > max_bytes:
        return f"a {what} is at most {max_bytes} bytes"
    try:
        report = decoder.decode(message.payload)
    except msgspec.DecodeError as exc:
        return f"invalid {what}: {exc}"
    except RecursionError:
        return f"invalid {what}: nested too deeply"
    command_id = report.id if isinstance(report, CommandAck) else report.command_id
    if not is_command_id(command_id):
        return f"invalid {what}: id {command_id[:64]!r} is not a command id"
    if report.ts is not None and report.ts.tzinfo is None:
        return f"invalid {what}: ts needs a time zone"
    return report


def _storable_topic(topic: str) -> str:
    """`topic` cut to what the dead-letter table can index, the rest named by its length and digest.

    `rejected_messages` is unique on (topic, payload digest, index), and a btree row holds at most 2704
    bytes: a longer topic (Mosquitto accepts up to 65535 bytes) would make the database refuse the dead
    letter itself, and the bridge retry that batch forever. Only a topic outside the grammar is this long.
    """
    if len(topic) <= DEAD_LETTER_TOPIC_MAX_CHARS:
        return topic
    digest = hashlib.sha256(topic.encode("utf-8", "surrogatepass")).hexdigest()[:16]
    return f"{topic[: DEAD_LETTER_TOPIC_MAX_CHARS - 64]}… ({len(topic)} characters, sha256 {digest})"


def _refuse(message: RawMessage, device_id: str | None, reason: str) -> Decoded:
    rejection = Rejection(message.topic, device_id, reason, message.payload, message.received_at)
    return Decoded(device_id, message.topic, message.payload, message.received_at, rejections=[rejection])


def _accept(message: RawMessage, device_id: str, result: DecodedTelemetry) -> Decoded:
    decoded = Decoded(device_id, message.topic, message.payload, message.received_at)
    for sample in result.samples:
        decoded.rows.append(telemetry_row(device_id, sample, message.received_at))
        decoded.keys.append((sample.boot, sample.seq))
        decoded.samples.append(sample)
        decoded.readings += sample.readings
    for bad in result.rejections:
        decoded.rejections.append(
            Rejection(
                message.topic,
                device_id,
                bad.reason,
                message.payload,
                message.received_at,
                bad.index,
                bad.seq,
                bad.boot,
            )
        )
    return decoded


def telemetry_row(device_id: str, sample: Sample, received_at: datetime) -> TelemetryRow:
    """One `telemetry` row in `TELEMETRY_COLUMNS` order."""
    row: list[Any] = [None] * len(TELEMETRY_COLUMNS)
    row[0] = sample.ts
    row[1] = received_at
    row[2] = sample.seq
    row[6] = sample.boot
    row[19] = sample.quality
    row[20] = device_id
    pos = sample.pos
    if pos is not None:
        row[3] = pos.lat
        row[4] = pos.lon
        row[7] = pos.alt
        row[8] = pos.speed
        row[9] = pos.heading
        row[10] = pos.accuracy
    extra: dict[str, float] | None = None
    for name, value in sample.metrics.items():
        column = METRIC_INDEX.get(name)
        if column is None:
            if extra is None:
                extra = {}
            extra[name] = value
        else:
            row[column] = value
    row[_EXTRA] = extra
    if sample.agg:
        # [min, max, avg, count], and the standard deviation fifth when the device sent one.
        row[_AGG] = {
            name: [a.min, a.max, a.avg, a.count] if a.std is None else [a.min, a.max, a.avg, a.count, a.std]
            for name, a in sample.agg.items()
        }
    return tuple(row)


Order = tuple[int, int, int]  # (ts_ms, boot, seq): the newer state value wins
Merge = dict[str, dict[str, tuple[Order, bytes]]]


@dataclass(frozen=True, slots=True)
class Newest:
    """The newest value of one state field of one device, and the sample (ts, boot, seq) that set it."""

    ts: datetime
    boot: int
    seq: int
    value: Any  # Position, float (metric), Aggregate, int (quality): as the live state encodes it

    def order(self) -> Order:
        """Its order in the cache's newer-wins merge (device time to the millisecond)."""
        return (int(self.ts.timestamp() * 1000), self.boot, self.seq)


def newest_values(decoded: Iterable[Decoded]) -> dict[str, dict[str, Newest]]:
    """Per device and state field, the newest value among the accepted samples, by (ts, boot, seq)."""
    newest: dict[str, dict[str, Newest]] = {}
    for item in decoded:
        if item.device_id is None or not item.samples:
            continue
        fields = newest.setdefault(item.device_id, {})
        for sample in item.samples:
            key = (sample.ts, sample.boot, sample.seq)
            candidates: list[tuple[str, Any]] = []
            if sample.pos is not None:
                candidates.append((FIELD_POSITION, sample.pos))
            candidates.extend((METRIC_PREFIX + name, value) for name, value in sample.metrics.items())
            candidates.extend((AGGREGATE_PREFIX + name, value) for name, value in sample.agg.items())
            if sample.quality is not None:
                candidates.append((FIELD_QUALITY, sample.quality))
            for name, value in candidates:
                current = fields.get(name)
                if current is None or key > (current.ts, current.boot, current.seq):
                    fields[name] = Newest(sample.ts, sample.boot, sample.seq, value)
    return newest


def coalesce(decoded: Iterable[Decoded]) -> Merge:
    """Newest value per device and state field among the accepted samples, encoded for the Redis merge.

    Picking winners first and encoding only them keeps the cost per batch near one encode per device
    and field, however many samples a device sent.
    """
    items = list(decoded)
    presence: dict[str, tuple[Order, bytes]] = {}
    for item in items:
        if item.presence is not None:
            order = (item.presence.order_ms, 0, 0)
            current_presence = presence.get(item.presence.device_id)
            if current_presence is None or order > current_presence[0]:
                presence[item.presence.device_id] = (order, item.presence.field())
    merged: Merge = {
        device: {name: _encoded(newest) for name, newest in fields.items()}
        for device, fields in newest_values(items).items()
    }
    for device, entry in presence.items():
        merged.setdefault(device, {})[FIELD_PRESENCE] = entry
    return merged


def _encoded(newest: Newest) -> tuple[Order, bytes]:
    order = newest.order()
    return order, encode_field(order[0], order[1], order[2], _json.encode(newest.value))


def with_presence(updates: Merge, presence: Iterable[PresenceUpdate]) -> Merge:
    """`updates` (changed in place) plus presence decided elsewhere (PostgreSQL: by telemetry or by
    silence), the newest per device winning, ordered by time like a live status."""
    for update in presence:
        order = (update.order_ms, 0, 0)
        fields = updates.setdefault(update.device_id, {})
        current = fields.get(FIELD_PRESENCE)
        if current is None or order > current[0]:
            fields[FIELD_PRESENCE] = (order, update.field())
    return updates
