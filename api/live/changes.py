"""Reading a table of changes (`alert_events`, `command_events`) in commit order, for live connections.

Rows are read in (xid, id) order, only from transactions below the current snapshot's xmin: those can no
longer commit, so a row that commits late (a lower xid) is never skipped by a reader that moved on. Each
reader starts at the rows committed after it started. It reads at each wake-up (a NOTIFY from the table's
trigger, `api.live.wake`) and every `poll_s` in any case, with one reconnect policy (capped backoff).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping
from typing import Any, Final

import psycopg
from psycopg.rows import dict_row

from api.live.wake import Wake
from api.pool import Pool

log = logging.getLogger(__name__)

POLL_S: Final = 0.25
RETRY_MAX_S: Final = 5.0
ROWS_PER_READ: Final = 1000
# After a wake-up that found nothing yet (a transaction still open holds the horizon back): look again soon.
SETTLE_READS: Final = 5
SETTLE_S: Final = 0.02

_HORIZON = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xid"
# The condition every reader's query uses, on its table aliased `e`.
AFTER_POSITION: Final = (
    "(e.xid > %(xid)s::xid8 OR (e.xid = %(xid)s::xid8 AND e.id > %(id)s))"
    " AND e.xid < pg_snapshot_xmin(pg_current_snapshot())"
)


class ChangeReader:
    """Reads a table of changes with `query` (which selects `event_xid`, `event_id` and takes `xid`, `id`
    and `limit` parameters) and hands each row to `deliver`, in order."""

    def __init__(self, pool: Pool, *, what: str, query: str, poll_s: float = POLL_S, wake: Wake | None = None) -> None:
        self._pool = pool
        self._what = what
        self._query = query
        self._poll_s = poll_s
        self._wake = wake
        self._settle = 0
        self._xid: str | None = None
        self._id = 0
        self.delivered = 0

    def deliver(self, row: Mapping[str, Any]) -> None:
        """Hand one row on (what the subclass is for)."""
        raise NotImplementedError

    async def run(self) -> None:
        """Read until cancelled."""
        delay = self._poll_s
        try:
            while True:
                try:
                    read = await self._read()
                    delay = self._poll_s
                except (psycopg.Error, OSError) as exc:
                    log.warning("%s unreadable (%s); retrying in %.1f s", self._what, exc, delay)
                    read = 0
                    delay = min(RETRY_MAX_S, delay * 2)
                if read >= ROWS_PER_READ:
                    continue
                if read == 0 and self._settle > 0:
                    self._settle -= 1
                    await asyncio.sleep(SETTLE_S)
                elif self._wake is None:
                    await asyncio.sleep(delay)
                else:
                    self._settle = SETTLE_READS if await self._wake.wait(delay) else 0
        finally:
            if self._wake is not None:
                await self._wake.close()

    async def _read(self) -> int:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            if self._xid is None:
                await cur.execute(_HORIZON)
                row = await cur.fetchone()
                self._xid = str(row["xid"]) if row is not None else "0"
                return 0
            await cur.execute(self._query, {"xid": self._xid, "id": self._id, "limit": ROWS_PER_READ})
            rows = await cur.fetchall()
        for row in rows:
            self._xid, self._id = row["event_xid"], row["event_id"]
            self.deliver(row)
            self.delivered += 1
        return len(rows)
