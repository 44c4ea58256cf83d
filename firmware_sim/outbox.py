"""A device's outbox: telemetry messages not yet acknowledged by the broker, tracked by MQTT packet id.

Pure bookkeeping, no MQTT and no locks (the device holds one around every call). An entry is *held*
(waiting for a connection), *sending* (handed to the client, packet id not yet known), or *in flight*
(handed to the client under a packet id, waiting for its PUBACK).

Who retransmits what, so that nothing is sent twice by two owners:

* paho-mqtt 2.x keeps every QoS 1 message it was given until its PUBACK arrives, across reconnects and
  even with clean start, and resends it with DUP set after the next CONNACK (its
  `_messages_reconnect_reset_out`; tests/integration/firmware_sim/test_fleet.py checks it against a
  broker killed with messages in flight). In-flight entries therefore stay with paho, under the same
  packet id; republishing them as well would send each twice.
* Entries produced while the device is offline are *held* here and not given to paho at all, so the
  offline buffer is bounded (oldest dropped first, as firmware with a fixed-size flash buffer does),
  and they are published when the connection comes back.

A PUBACK can be processed on paho's network thread before `publish()` has even returned the packet id
to the publishing thread; such early acknowledgements are parked until the id is bound.
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass, field


@dataclass(slots=True, eq=False)
class OutboxEntry:
    """One telemetry message: its encoded payload and the (boot, seq) of the samples it carries."""

    payload: bytes
    keys: tuple[tuple[int, int], ...]
    readings: int
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

    def __init__(self, max_held_samples: int) -> None:
        if max_held_samples < 1:
            raise ValueError("an outbox must be able to hold at least one sample")
        self._max_held_samples = max_held_samples
        self._held: deque[OutboxEntry] = deque()
        self._held_samples = 0
        self._sending: set[int] = set()  # id() of entries between take_held() and bind()
        self._sending_samples = 0
        self._in_flight: dict[int, OutboxEntry] = {}
        self._in_flight_samples = 0
        self._early: dict[int, bool] = {}  # packet id -> failed, for acks that beat bind()
        self._untracked: set[int] = set()  # packet ids of messages that are not telemetry (status)

    @property
    def pending_samples(self) -> int:
        """Samples not yet acknowledged: held, being sent, or in flight."""
        return self._held_samples + self._sending_samples + self._in_flight_samples

    @property
    def held_samples(self) -> int:
        """Samples waiting for a connection."""
        return self._held_samples

    @property
    def in_flight_messages(self) -> int:
        """Messages handed to the MQTT client and not yet acknowledged."""
        return len(self._in_flight) + len(self._sending)

    @property
    def in_flight_samples(self) -> int:
        """Samples in messages handed to the MQTT client and not yet acknowledged."""
        return self._in_flight_samples + self._sending_samples

    def __bool__(self) -> bool:
        return self.pending_samples > 0

    def hold(self, entry: OutboxEntry) -> list[OutboxEntry]:
        """Keep `entry` until a connection takes it; return the oldest entries dropped to make room."""
        self._held.append(entry)
        self._held_samples += entry.samples
        dropped: list[OutboxEntry] = []
        # Keep at least the newest entry, even if it alone is larger than the buffer.
        while self._held_samples > self._max_held_samples and len(self._held) > 1:
            oldest = self._held.popleft()
            self._held_samples -= oldest.samples
            dropped.append(oldest)
        return dropped

    def take_held(self) -> list[OutboxEntry]:
        """Everything held, oldest first, now being sent; each must come back via `bind` or `requeue`."""
        taken = list(self._held)
        self._held.clear()
        self._held_samples = 0
        for entry in taken:
            self._sending.add(id(entry))
            self._sending_samples += entry.samples
        return taken

    def requeue(self, entries: list[OutboxEntry]) -> None:
        """Put entries the client would not take back in front of the held ones, order kept."""
        for entry in reversed(entries):
            self._stop_sending(entry)
            self._held.appendleft(entry)
            self._held_samples += entry.samples

    def bind(self, entry: OutboxEntry, mid: int) -> Settled | None:
        """Record that `entry` went out as packet `mid`; settle it at once if its ack came first."""
        self._stop_sending(entry)
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

    def _stop_sending(self, entry: OutboxEntry) -> None:
        if id(entry) in self._sending:
            self._sending.discard(id(entry))
            self._sending_samples -= entry.samples
