"""Collect decoded messages into batches by count and age; each entry carries the future its ack awaits.

Pure apart from asyncio futures: the clock is an argument, so tests need no sleeps.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from bridge.decode import Decoded


@dataclass(slots=True)
class Entry:
    """One message in a batch and the future resolved once its batch is committed."""

    decoded: Decoded
    # Resolved once the batch is committed: None, or why the database refused this message (dead-lettered).
    done: asyncio.Future[str | None]
    generation: int = 0


@dataclass(slots=True)
class Batch:
    """Messages written to PostgreSQL in one transaction."""

    entries: list[Entry] = field(default_factory=list)
    opened_at: float = 0.0

    def __len__(self) -> int:
        return len(self.entries)


class Batcher:
    """Accumulates entries; a batch is due when it holds `max_messages` or is `max_age_s` old."""

    def __init__(self, *, max_messages: int, max_age_s: float) -> None:
        self._max_messages = max_messages
        self._max_age_s = max_age_s
        self._current = Batch()

    def add(self, decoded: Decoded, done: asyncio.Future[str | None], now: float, generation: int = 0) -> bool:
        """Add one message; True when the current batch became full."""
        if not self._current.entries:
            self._current.opened_at = now
        self._current.entries.append(Entry(decoded, done, generation))
        return len(self._current.entries) >= self._max_messages

    def pending(self) -> int:
        """Messages waiting in the current batch."""
        return len(self._current.entries)

    def due_in(self, now: float) -> float | None:
        """Seconds until the current batch is due (0: now), or None when it is empty."""
        if not self._current.entries:
            return None
        if len(self._current.entries) >= self._max_messages:
            return 0.0
        return max(0.0, self._current.opened_at + self._max_age_s - now)

    def drop(self, generation: int) -> list[Entry]:
        """Remove the waiting entries that came on connection `generation`; return them."""
        kept: list[Entry] = []
        dropped: list[Entry] = []
        for entry in self._current.entries:
            (dropped if entry.generation == generation else kept).append(entry)
        self._current.entries = kept
        return dropped

    def take(self) -> Batch:
        """Hand over the current batch and start a new one."""
        batch, self._current = self._current, Batch()
        return batch
