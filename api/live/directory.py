"""Which group each device belongs to, cached per API instance from PostgreSQL `devices.group_name`.

Routing a live update must not wait for the database, so every instance keeps the whole map in memory
and reloads it every `api.live_group_refresh_s` seconds; subscribe requests reload it first, so a
client subscribing to a group sees the registry as it is. Between reloads a device moved to another
group keeps its old group (for at most one refresh interval), also for group-limited API keys.
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING

import psycopg

if TYPE_CHECKING:  # api.backends holds the hub, which holds this: a runtime import would be circular
    from api.pool import Pool

log = logging.getLogger(__name__)


class GroupDirectory:
    """device id -> group name for the devices that have a group; reloaded whole."""

    def __init__(self, pool: Pool, *, refresh_s: float) -> None:
        self._pool = pool
        self.refresh_s = refresh_s
        self._group_of: dict[str, str] = {}
        self._members: dict[str, set[str]] = {}
        self._loaded_at: float | None = None
        self._lock = asyncio.Lock()

    def group_of(self, device_id: str) -> str | None:
        """The device's group, as of the last reload."""
        return self._group_of.get(device_id)

    def members(self, group: str) -> set[str]:
        """The group's devices, as of the last reload."""
        return set(self._members.get(group, ()))

    async def reload(self) -> None:
        """Read the map again; raises `psycopg.OperationalError` when PostgreSQL does not answer."""
        async with self._lock:
            await self._load()

    async def _load(self) -> None:
        # The map's age counts from the query's start: a change committed during it may be missing.
        started = time.monotonic()
        async with self._pool.connection() as conn, conn.cursor() as cur:
            await cur.execute("SELECT id, group_name FROM devices WHERE group_name IS NOT NULL")
            rows = await cur.fetchall()
        members: dict[str, set[str]] = {}
        for device_id, group in rows:
            members.setdefault(group, set()).add(device_id)
        self._group_of = {row[0]: row[1] for row in rows}
        self._members = members
        self._loaded_at = started

    def _older_than(self, max_age_s: float) -> bool:
        return self._loaded_at is None or time.monotonic() - self._loaded_at > max_age_s

    async def reload_if_older(self, max_age_s: float) -> None:
        """Reload when the map is older than `max_age_s` (or was never loaded).

        Many requests finding the map old at once reload it once: each looks again after the lock.
        """
        if not self._older_than(max_age_s):
            return
        async with self._lock:
            if self._older_than(max_age_s):
                await self._load()

    async def run(self) -> None:
        """Reload every `refresh_s` until cancelled; a failed reload keeps the old map and is logged."""
        while True:
            try:
                await self.reload()
            except (psycopg.OperationalError, OSError) as exc:
                log.warning("device groups not reloaded (%s); keeping the previous map", exc)
            await asyncio.sleep(self.refresh_s)
