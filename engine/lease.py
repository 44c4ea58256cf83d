"""Which feed partitions this instance evaluates: PostgreSQL session advisory locks, one per partition.

A partition's lock is held by the connection that runs its cycles, so two instances can never evaluate a
device at once, and an instance that dies (SIGKILL, lost link) loses its locks with its connection. Each
instance heartbeats in `engine_instances` and takes its share, ceil(partitions / live instances): one
that holds more than its share releases the surplus between cycles, and the others pick it up.
"""

from __future__ import annotations

import math
from typing import Any, Final

import psycopg

from models.feed import FEED_PARTITIONS

LOCK_CLASS: Final = 0x456E67  # "Eng": the first key of every partition lock; the second is the partition
LIVE_WITHIN_S: Final = 10.0  # an instance silent this long no longer counts towards the share

_HEARTBEAT = (
    "INSERT INTO engine_instances (name, seen_at, parts) VALUES (%s, now(), %s)"
    " ON CONFLICT (name) DO UPDATE SET seen_at = now(), parts = EXCLUDED.parts"
)
_LIVE = "SELECT count(*) FROM engine_instances WHERE seen_at > now() - make_interval(secs => %s)"
_FORGET = "DELETE FROM engine_instances WHERE name = %s"


class PartitionLease:
    """The partitions one engine instance holds on its connection."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.held: set[int] = set()
        # Instances start their search at different partitions, so their first grabs rarely collide.
        self._offset = sum(name.encode()) % FEED_PARTITIONS

    def lost(self) -> None:
        """The connection is gone, and its locks with it."""
        self.held.clear()

    async def rebalance(self, conn: psycopg.AsyncConnection[Any]) -> set[int]:
        """Heartbeat, then take or release partitions towards this instance's share; return those held."""
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute(_HEARTBEAT, (self.name, sorted(self.held)))
            await cur.execute(_LIVE, (LIVE_WITHIN_S,))
            row = await cur.fetchone()
            live = max(1, row[0] if row is not None else 1)
            share = math.ceil(FEED_PARTITIONS / live)
            for part in sorted(self.held, reverse=True)[: max(0, len(self.held) - share)]:
                await cur.execute("SELECT pg_advisory_unlock(%s, %s)", (LOCK_CLASS, part))
                self.held.discard(part)
            for step in range(FEED_PARTITIONS):
                if len(self.held) >= share:
                    break
                part = (self._offset + step) % FEED_PARTITIONS
                if part in self.held:
                    continue
                await cur.execute("SELECT pg_try_advisory_lock(%s, %s)", (LOCK_CLASS, part))
                got = await cur.fetchone()
                if got is not None and got[0]:
                    self.held.add(part)
            await cur.execute(_HEARTBEAT, (self.name, sorted(self.held)))
        return set(self.held)

    async def release(self, conn: psycopg.AsyncConnection[Any]) -> None:
        """Give every partition back and leave the instance list (a clean stop)."""
        async with conn.transaction(), conn.cursor() as cur:
            await cur.execute("SELECT pg_advisory_unlock_all()")
            await cur.execute(_FORGET, (self.name,))
        self.held.clear()
