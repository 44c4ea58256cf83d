"""Command transitions for live connections, read from PostgreSQL's `command_events` (written by the API
and by the bridge, each in the transaction of the change).

Read like alert changes (`api.live.alerts`): in (xid, id) order, only from transactions below the current
snapshot's xmin, so a transition that commits late is never skipped; each instance starts at the
transitions committed after it started. Each is sent to every connection that selected the command's
device, as a message that is never conflated (`LiveHub.publish_alert`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import psycopg
from psycopg.rows import dict_row

from api.commands.services import COMMAND_COLUMNS, command_from_row
from api.live.hub import LiveHub
from api.live.schemas import SERVER_MESSAGES, CommandUpdateMessage
from api.pool import Pool

log = logging.getLogger(__name__)

POLL_S: Final = 0.25
RETRY_MAX_S: Final = 5.0
EVENTS_PER_READ: Final = 1000

_HORIZON = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xid"
_EVENTS = (
    "SELECT e.xid::text AS event_xid, e.id AS event_id, e.state AS event_state, e.at AS event_at,"
    f" {COMMAND_COLUMNS} FROM command_events e JOIN commands c ON c.id = e.command_id"
    " WHERE (e.xid > %(xid)s::xid8 OR (e.xid = %(xid)s::xid8 AND e.id > %(id)s))"
    " AND e.xid < pg_snapshot_xmin(pg_current_snapshot()) ORDER BY e.xid, e.id LIMIT %(limit)s"
)


class CommandEventReader:
    """Polls `command_events` and hands each transition to the hub; one reconnect policy (capped backoff)."""

    def __init__(self, pool: Pool, hub: LiveHub, *, poll_s: float = POLL_S) -> None:
        self._pool = pool
        self._hub = hub
        self._poll_s = poll_s
        self._xid: str | None = None
        self._id = 0
        self.delivered = 0

    async def run(self) -> None:
        """Read until cancelled."""
        delay = self._poll_s
        while True:
            try:
                read = await self._read()
                delay = self._poll_s
            except (psycopg.Error, OSError) as exc:
                log.warning("command transitions unreadable (%s); retrying in %.1f s", exc, delay)
                read = 0
                delay = min(RETRY_MAX_S, delay * 2)
            if read < EVENTS_PER_READ:
                await asyncio.sleep(delay)

    async def _read(self) -> int:
        async with self._pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
            if self._xid is None:
                await cur.execute(_HORIZON)
                row = await cur.fetchone()
                self._xid = str(row["xid"]) if row is not None else "0"
                return 0
            await cur.execute(_EVENTS, {"xid": self._xid, "id": self._id, "limit": EVENTS_PER_READ})
            rows = await cur.fetchall()
        for row in rows:
            self._xid, self._id = row["event_xid"], row["event_id"]
            command = command_from_row(row)
            message = CommandUpdateMessage(state=row["event_state"], at=row["event_at"], command=command)
            self._hub.publish_alert(command.device_id, SERVER_MESSAGES.encode(message))
            self.delivered += 1
        return len(rows)
