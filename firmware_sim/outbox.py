"""A device's outbox: telemetry messages handed to the MQTT client and not yet acknowledged by the broker.

Pure bookkeeping, no MQTT and no locks (the device holds one around every call). An entry is
*sending* (handed to the client, packet id not yet known) or *in flight* (under a packet id, waiting
for its PUBACK); then it is *settled*: acknowledged, or refused with a failure reason code.

This is the middle one of three layers, each owning one stretch of a sample's way (see `forward`):

1. the store (`store`) keeps every sample until the bridge confirms it on `persisted`;
2. paho-mqtt owns a message from `publish()` to its PUBACK. It keeps every QoS 1 message it was given
   until then, across reconnects and even with clean start, and resends it with DUP set after the
   next CONNACK (its `_messages_reconnect_reset_out`; tests/integration/firmware_sim/test_fleet.py
   checks it against a broker killed with messages in flight). In-flight entries therefore stay with
   paho under their packet id, and nothing else resends them;
3. after the PUBACK the forwarder (`forward`) owns the message again, and resends what the bridge has
   not confirmed after a timeout or a reconnect.

A PUBACK can be processed on paho's network thread before `publish()` has even returned the packet id
to the publishing thread; such early acknowledgements are parked until the id is bound.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

Span = tuple[int, int]  # store positions first..last, inclusive


@dataclass(slots=True, eq=False)
class OutboxEntry:
    """One telemetry message: its payload, the (boot, seq) of its samples and the store spans they came from.

    `resend` marks a message that carries samples sent before (the forwarder's resend, not paho's).
    """

    payload: bytes
    keys: tuple[tuple[int, int], ...]
    readings: int
    spans: tuple[Span, ...] = ()
    resend: bool = False
    mid: int | None = field(default=None)

    @property
    def samples(self) -> int:
        """Samples in this message."""
        return len(self.keys)


@dataclass(frozen=True, slots=True)
class Settled:
    """An entry the broker answered: acknowledged, or refused with a failure reason code."""

    entry: OutboxEntry
    failed: bool


class Outbox:
    """The messages of one device that the broker has not acknowledged yet."""

    def __init__(self) -> None:
        self._sending: set[int] = set()  # id() of entries between start() and bind()/abandon()
        self._sending_samples = 0
        self._in_flight: dict[int, OutboxEntry] = {}
        self._in_flight_samples = 0
        self._early: dict[int, bool] = {}  # packet id -> failed, for acks that beat bind()
        self._untracked: set[int] = set()  # packet ids of messages that are not telemetry (status)

    @property
    def in_flight_messages(self) -> int:
        """Messages handed to the MQTT client and not yet acknowledged."""
        return len(self._in_flight) + len(self._sending)

    @property
    def in_flight_samples(self) -> int:
        """Samples in messages handed to the MQTT client and not yet acknowledged."""
        return self._in_flight_samples + self._sending_samples

    def __bool__(self) -> bool:
        return self.in_flight_messages > 0

    def start(self, entries: Iterable[OutboxEntry]) -> None:
        """These entries are about to be published; each must come back via `bind` or `abandon`."""
        for entry in entries:
            self._sending.add(id(entry))
            self._sending_samples += entry.samples

    def abandon(self, entry: OutboxEntry) -> None:
        """The client did not take `entry`: stop tracking it (its samples stay in the store)."""
        if id(entry) in self._sending:
            self._sending.discard(id(entry))
            self._sending_samples -= entry.samples

    def bind(self, entry: OutboxEntry, mid: int) -> Settled | None:
        """Record that `entry` went out as packet `mid`; settle it at once if its ack came first."""
        self.abandon(entry)
        entry.mid = mid
        failed = self._early.pop(mid, None)
        if failed is not None:
            return Settled(entry, failed)
        self._in_flight[mid] = entry
        self._in_flight_samples += entry.samples
        return None

    def bind_untracked(self, mid: int) -> None:
        """Packet `mid` is not telemetry (a status message): its acknowledgement settles nothing."""
        if self._early.pop(mid, None) is None:
            self._untracked.add(mid)

    def settle(self, mid: int, *, failed: bool) -> Settled | None:
        """The broker answered packet `mid`; return the entry it settles, if it is one of ours."""
        entry = self._in_flight.pop(mid, None)
        if entry is not None:
            self._in_flight_samples -= entry.samples
            return Settled(entry, failed)
        if mid in self._untracked:
            self._untracked.discard(mid)
        else:
            self._early[mid] = failed
        return None
