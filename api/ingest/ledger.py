"""Which forwarded messages the bridge has answered for: its replies matched to the requests waiting.

The bridge's replies carry no request id. `persisted` lists the (boot, seq) ranges of one device
committed in one batch; `rejected` names one refused message or sample, with its index, seq and boot
where known (models/state.py, bridge/fanout.py). So before a message is forwarded, it is described by
the units the bridge will answer for: each sample by (index, boot, seq), read with the very decoder the
bridge uses (`models.telemetry.decode_telemetry`), or the message as a whole when it cannot be parsed.
A reply then settles the units it names:

* `persisted` settles every pending sample of that device whose (boot, seq) it lists, whoever sent
  it: listed means in the database, which is all an HTTP 200 promises;
* a `rejected` notice with a seq settles one pending sample with that (boot, seq), the same index
  first; with an index but no seq, one sample at that index whose seq is unknown; with neither, one
  whole message, the one whose expected reason matches first, else, only for a message the database
  refused whole (`models.state.DATABASE_REFUSAL`), the oldest message nothing of which is settled yet;
  any other unmatched notice (a refusal told twice, for a redelivered message) settles nothing.

The decode beforehand only says what to wait for; outcomes come from the bridge alone. A sample the
API expects to pass and the bridge refuses (its clock moved past the skew limit) is reported refused,
and the other way round. Pending messages of a device are kept in the order they were sent, and each
notice settles one unit, so two identical bad lines get one notice each.

What cannot be told apart: a notice for the same (boot, seq) from another source (the device also
publishing over MQTT, another API instance) may settle the wrong one of two identical messages; both
were refused for the same reason anyway. Notices beyond the bridge's 1000 per batch are never sent:
those messages stay unconfirmed (504), and a retry is answered in full.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Final

import msgspec

from models import topics
from models.state import DATABASE_REFUSAL, Persisted, PersistedRange, RejectedNotice, seq_ranges
from models.telemetry import Limits, MessageRejection, decode_telemetry

log = logging.getLogger(__name__)

_PERSISTED: Final = msgspec.json.Decoder(Persisted)
_REJECTED: Final = msgspec.json.Decoder(RejectedNotice)

Key = tuple[int | None, int]  # (boot, seq) as the bridge reports it; boot is None when it could not be read


@dataclass(slots=True)
class Unit:
    """One thing the bridge will answer for: a sample (`index` set) or a whole message (`index` None)."""

    index: int | None
    boot: int | None = None
    seq: int | None = None
    expected_reason: str | None = None  # what the API's own decode says, to tell refused messages apart
    stored: bool = False
    reason: str | None = None  # the bridge's reason, once it refused this

    @property
    def settled(self) -> bool:
        """True once the bridge stored or refused it."""
        return self.stored or self.reason is not None


def expected_units(
    payload: bytes, *, content_type: str | None, now: datetime, limits: Limits, device_id: str | None = None
) -> list[Unit]:
    """The units the bridge will answer for when `device_id` sends `payload` (possibly none: an empty batch)."""
    result = decode_telemetry(payload, content_type=content_type, now=now, limits=limits, device_id=device_id)
    if isinstance(result, MessageRejection):
        return [Unit(None, expected_reason=result.reason)]
    refused = {rejection.index: rejection for rejection in result.rejections}
    accepted = iter(result.samples)
    units: list[Unit] = []
    for index in range(len(result.samples) + len(result.rejections)):
        rejection = refused.get(index)
        if rejection is None:
            sample = next(accepted)
            units.append(Unit(index, sample.boot, sample.seq))
        else:
            units.append(Unit(index, rejection.boot, rejection.seq, rejection.reason))
    return units


@dataclass(slots=True)
class Tracked:
    """The messages of one request, waiting for the bridge; `settled` is set when all are answered."""

    device_id: str
    messages: list[list[Unit]]
    settled: asyncio.Event = field(default_factory=asyncio.Event)
    open: int = 0
    by_key: dict[Key, list[Unit]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        for units in self.messages:
            for unit in units:
                self.open += 1
                if unit.seq is not None:
                    self.by_key.setdefault((unit.boot, unit.seq), []).append(unit)
        if self.open == 0:
            self.settled.set()

    def settle(self, unit: Unit, *, reason: str | None) -> None:
        """Record the bridge's answer for one open unit."""
        if reason is None:
            unit.stored = True
        else:
            unit.reason = reason
        self.open -= 1
        if self.open == 0:
            self.settled.set()


class ReplyLedger:
    """The requests of this API instance waiting for the bridge, by device, in the order they were sent."""

    def __init__(self) -> None:
        self._waiting: dict[str, list[Tracked]] = {}

    def track(self, device_id: str, messages: list[list[Unit]]) -> Tracked:
        """Start waiting for `messages` of `device_id`; call before publishing, so no reply is missed."""
        tracked = Tracked(device_id, messages)
        self._waiting.setdefault(device_id, []).append(tracked)
        return tracked

    def forget(self, tracked: Tracked) -> None:
        """Stop waiting for a request (answered, or given up)."""
        waiting = self._waiting.get(tracked.device_id)
        if waiting is None:
            return
        waiting[:] = [other for other in waiting if other is not tracked]
        if not waiting:
            del self._waiting[tracked.device_id]

    def dispatch(self, topic: str, payload: bytes) -> None:
        """Take one message of `fleet/v1/+/persisted` or `fleet/v1/+/rejected`; others are ignored."""
        try:
            parsed = topics.parse(topic)
        except topics.TopicError:
            return
        if parsed.device_id not in self._waiting:
            return  # the usual case: every instance hears every device's replies
        try:
            if parsed.kind is topics.TopicKind.PERSISTED:
                self.persisted(parsed.device_id, _PERSISTED.decode(payload).ranges)
            elif parsed.kind is topics.TopicKind.REJECTED:
                self.rejected(parsed.device_id, _REJECTED.decode(payload))
        except msgspec.DecodeError as exc:
            log.warning("ignoring an undecodable reply on %s: %s", topic, exc)

    def persisted(self, device_id: str, ranges: Iterable[PersistedRange]) -> None:
        """The bridge committed these (boot, seq) of `device_id`: settle every open sample they cover."""
        for tracked in self._waiting.get(device_id, ()):
            for covered in ranges:
                if covered.last - covered.first < len(tracked.by_key):
                    keys: Iterable[Key] = ((covered.boot, seq) for seq in range(covered.first, covered.last + 1))
                else:
                    keys = [
                        key
                        for key in tracked.by_key
                        if key[0] == covered.boot and covered.first <= key[1] <= covered.last
                    ]
                for key in keys:
                    for unit in tracked.by_key.get(key, ()):
                        if not unit.settled and unit.index is not None:
                            tracked.settle(unit, reason=None)

    def rejected(self, device_id: str, notice: RejectedNotice) -> None:
        """The bridge refused one message or sample of `device_id`: settle the one open unit it names."""
        if notice.topic != topics.device_topic(device_id, topics.TopicKind.TELEMETRY):
            return  # a refused status, say: not ours
        found = self._find(device_id, notice)
        if found is None:
            log.debug("no waiting message of %s matches the refusal %s", device_id, notice)
            return
        tracked, units = found
        for unit in units:
            tracked.settle(unit, reason=notice.reason)

    def _find(self, device_id: str, notice: RejectedNotice) -> tuple[Tracked, list[Unit]] | None:
        waiting = self._waiting.get(device_id, [])
        if notice.seq is not None:
            return _by_key(waiting, notice)
        if notice.index is not None:
            return _by_index(waiting, notice.index)
        return _whole(waiting, notice.reason)


def _by_key(waiting: list[Tracked], notice: RejectedNotice) -> tuple[Tracked, list[Unit]] | None:
    """The first open sample with the notice's (boot, seq), at the notice's index if there is one."""
    assert notice.seq is not None
    for tracked in waiting:
        candidates = [unit for unit in tracked.by_key.get((notice.boot, notice.seq), ()) if not unit.settled]
        if candidates:
            same_index = [unit for unit in candidates if unit.index == notice.index]
            return tracked, [(same_index or candidates)[0]]
    return None


def _by_index(waiting: list[Tracked], index: int) -> tuple[Tracked, list[Unit]] | None:
    """The first open sample at `index` whose seq could not be read."""
    for tracked in waiting:
        for units in tracked.messages:
            for unit in units:
                if not unit.settled and unit.seq is None and unit.index == index:
                    return tracked, [unit]
    return None


def _whole(waiting: list[Tracked], reason: str) -> tuple[Tracked, list[Unit]] | None:
    """The message a whole-message refusal is about: expected to fail so first, else the oldest open one."""
    whole = [
        (tracked, unit)
        for tracked in waiting
        for units in tracked.messages
        for unit in units
        if unit.index is None and not unit.settled
    ]
    for tracked, unit in whole:
        if unit.expected_reason == reason:
            return tracked, [unit]
    if not reason.startswith(DATABASE_REFUSAL):
        # A notice for a message no request waits for (a redelivered refusal, told twice): settling the
        # oldest open message with it would report stored samples as refused.
        return None
    if whole:
        return whole[0][0], [whole[0][1]]
    # Refused whole although it decoded (the database refused it): none of its samples is settled yet.
    for tracked in waiting:
        for units in tracked.messages:
            if units and not any(unit.settled for unit in units):
                return tracked, units
    return None


@dataclass(frozen=True, slots=True)
class Outcome:
    """What the bridge said about one message: the ranges stored, the refusals, and what it left open."""

    stored: list[PersistedRange]
    refused: list[Unit]
    open: int


def outcome(units: list[Unit]) -> Outcome:
    """Summarise one message's units."""
    stored = [(unit.boot or 0, unit.seq) for unit in units if unit.stored and unit.seq is not None]
    refused = [unit for unit in units if unit.reason is not None]
    return Outcome(seq_ranges(stored), refused, sum(1 for unit in units if not unit.settled))
