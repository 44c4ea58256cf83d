"""A device's events (`fleet/v1/{id}/events`) until the bridge confirms them: pure bookkeeping, no MQTT.

Events travel beside the sample store, not in it: the bridge confirms them apart from samples (`persisted`
lists them under `events`), and a refusal of one is matched by the SHA-256 of its payload (an event is
refused whole, without a seq). An event is sent at once when connected, again after `persist_timeout_s`
without confirmation or at the next connect, and leaves when confirmed or refused. At most `max_events`
wait (the oldest are dropped and counted). They are kept in memory only: a restarted simulator starts a
new boot anyway when it has no store directory, and an event lost with the process is counted nowhere,
which a device with flash would avoid by storing them like its samples.

Each event's `seq` is its device time in milliseconds (strictly increasing per device): unique across
restarts of one boot without a stored counter, and never confused with the samples' seq.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import msgspec

from models.events import Event
from models.state import PersistedRange

MAX_EVENTS: Final = 10_000
_EPOCH_MS: Final = 1000


@dataclass(slots=True)
class _Waiting:
    payload: bytes
    digest: str
    sent_at: float | None  # None: due (never sent on this connection)


class EventOutbox:
    """The events of one device that the bridge has not confirmed."""

    def __init__(self, *, persist_timeout_s: float, max_events: int = MAX_EVENTS) -> None:
        self._timeout_s = persist_timeout_s
        self._max = max_events
        self._waiting: dict[tuple[int, int], _Waiting] = {}
        self._last_seq = -1
        self.dropped = 0
        self.confirmed = 0
        self.refused = 0

    def __len__(self) -> int:
        return len(self._waiting)

    def add(self, *, boot: int, ts: datetime, name: str, data: dict[str, Any]) -> Event:
        """Number a new event and keep it until confirmed; return it (due to be sent)."""
        seq = max(int(ts.timestamp() * _EPOCH_MS), self._last_seq + 1)
        self._last_seq = seq
        event = Event(seq=seq, ts=ts, name=name, boot=boot, data=data)
        payload = msgspec.json.encode(event)
        if len(self._waiting) >= self._max:
            del self._waiting[next(iter(self._waiting))]
            self.dropped += 1
        self._waiting[(boot, seq)] = _Waiting(payload, hashlib.sha256(payload).hexdigest(), None)
        return event

    def due(self, now: float) -> list[bytes]:
        """Payloads to publish now (never sent on this connection, or unconfirmed for the timeout); marked sent."""
        out: list[bytes] = []
        for waiting in self._waiting.values():
            if waiting.sent_at is None or now - waiting.sent_at >= self._timeout_s:
                waiting.sent_at = now
                out.append(waiting.payload)
        return out

    def next_due_at(self) -> float | None:
        """When the earliest resend comes due (None: nothing waits)."""
        times = [w.sent_at + self._timeout_s if w.sent_at is not None else 0.0 for w in self._waiting.values()]
        return min(times, default=None)

    def reconnected(self) -> None:
        """A new connection: everything unconfirmed is due again (the broker may have lost it)."""
        for waiting in self._waiting.values():
            waiting.sent_at = None

    def confirm(self, ranges: Iterable[PersistedRange]) -> int:
        """Free the events a `persisted` message lists under `events`; return how many."""
        freed = 0
        for r in ranges:
            for key in [k for k in self._waiting if k[0] == r.boot and r.first <= k[1] <= r.last]:
                del self._waiting[key]
                freed += 1
        self.confirmed += freed
        return freed

    def refuse(self, digest: str) -> bool:
        """Free the event whose payload has this SHA-256 (a `rejected` notice); resending cannot help."""
        for key, waiting in self._waiting.items():
            if waiting.digest == digest:
                del self._waiting[key]
                self.refused += 1
                return True
        return False
