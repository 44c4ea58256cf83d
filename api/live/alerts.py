"""Alert changes for live connections, read from PostgreSQL's `alert_events` (written by the engine and by
the API in the transaction of each change) in commit order (`api.live.changes`). A change is sent to every
connection that selected the alert's device (its id, group, the whole fleet, or a box it is in), as a
message that is never conflated (`LiveHub.publish_alert`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from api.alerts.services import ALERT_SELECT, alert_from_row
from api.live.changes import ChangeReader
from api.live.hub import LiveHub
from api.live.schemas import SERVER_MESSAGES, AlertMessage
from api.live.wake import Wake
from api.pool import Pool
from models.rule_store import ALERT_EVENTS_AFTER

# Notified by the table's trigger (models/migrations/0026_live_wakeups.sql) at each COMMIT that adds rows.
ALERT_EVENTS_CHANNEL: Final = "fleet_alert_events"
_EVENTS = (
    f"SELECT e.xid::text AS event_xid, e.id AS event_id, e.kind AS event_kind, q.* FROM alert_events e"
    f" JOIN ({ALERT_SELECT}) q ON q.id = e.alert_id"
    f" WHERE {ALERT_EVENTS_AFTER} ORDER BY e.xid, e.id LIMIT %(limit)s"
)
_EVENT_FIELDS: Final = ("event_xid", "event_id", "event_kind")


class AlertEventReader(ChangeReader):
    """Hands each alert change to the hub."""

    def __init__(self, pool: Pool, hub: LiveHub, *, wake: Wake | None = None) -> None:
        super().__init__(pool, what="alert events", query=_EVENTS, wake=wake)
        self._hub = hub

    def deliver(self, row: Mapping[str, Any]) -> None:
        """Push one change, with the alert as it is after it."""
        alert = alert_from_row({k: v for k, v in row.items() if k not in _EVENT_FIELDS})
        self._hub.publish_alert(alert.device_id, SERVER_MESSAGES.encode(AlertMessage(row["event_kind"], alert)))
