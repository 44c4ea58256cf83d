"""Alert changes for live connections, read from PostgreSQL's `alert_events` (written by the engine and by
the API in the transaction of each change).

Events are read in (xid, id) order, only from transactions below the current snapshot's xmin: those can
no longer commit, so an event that commits late (a lower xid) is never skipped by a reader that moved on.
Each instance starts at the events committed after it started; a change is sent to every connection that
selected the alert's device (its id, group, the whole fleet, or a box it is in), as a message that is
never conflated (`LiveHub.publish_alert`).
"""

from __future__ import annotations

import asyncio
import logging
from typing import Final

import psycopg
from psycopg.rows import dict_row

from api.alerts.services import ALERT_SELECT, alert_from_row
from api.live.hub import LiveHub
from api.live.schemas import SERVER_MESSAGES, AlertMessage
from api.pool import Pool
from models.rule_store import ALERT_EVENTS_AFTER

log = logging.getLogger(__name__)

ALERT_POLL_S: Final = 0.25
ALERT_RETRY_MAX_S: Final = 5.0
EVENTS_PER_READ: Final = 1000

_HORIZON = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text AS xid"
_EVENTS = (
    f"SELECT e.xid::text AS event_xid, e.id AS event_id, e.kind AS event_kind, q.* FROM alert_events e"
    f" JOIN ({ALERT_SELECT}) q ON q.id = e.alert_id"
    f" WHERE {ALERT_EVENTS_AFTER} ORDER BY e.xid, e.id LIMIT %(limit)s"
)
_EVENT_FIELDS: Final = ("event_xid", "event_id", "event_kind")


class AlertEventReader:
    """Polls `alert_events` and hands each change to the hub; one reconnect policy (capped backoff)."""

    def __init__(self, pool: Pool, hub: LiveHub, *, poll_s: float = ALERT_POLL_S) -> None:
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
                log.warning("alert events unreadable (%s); retrying in %.1f s", exc, delay)
                read = 0
                delay = min(ALERT_RETRY_MAX_S, delay * 2)
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
            alert = alert_from_row({k: v for k, v in row.items() if k not in _EVENT_FIELDS})
            self._hub.publish_alert(alert.device_id, SERVER_MESSAGES.encode(AlertMessage(row["event_kind"], alert)))
            self.delivered += 1
        return len(rows)
