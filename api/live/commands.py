"""Command transitions for live connections, read from PostgreSQL's `command_events` (written by the API
and by the bridge, each in the transaction of the change) in commit order (`api.live.changes`). Each is
sent to every connection that selected the command's device, as a message that is never conflated
(`LiveHub.publish_alert`)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from api.commands.services import COMMAND_COLUMNS, command_from_row
from api.live.changes import AFTER_POSITION, ChangeReader
from api.live.hub import LiveHub
from api.live.schemas import SERVER_MESSAGES, CommandUpdateMessage
from api.live.wake import Wake
from api.pool import Pool

# Notified by the table's trigger (models/migrations/0026_live_wakeups.sql) at each COMMIT that adds rows.
COMMAND_EVENTS_CHANNEL: Final = "fleet_command_events"
_EVENTS = (
    "SELECT e.xid::text AS event_xid, e.id AS event_id, e.state AS event_state, e.at AS event_at,"
    f" {COMMAND_COLUMNS} FROM command_events e JOIN commands c ON c.id = e.command_id"
    f" WHERE {AFTER_POSITION} ORDER BY e.xid, e.id LIMIT %(limit)s"
)


class CommandEventReader(ChangeReader):
    """Hands each command transition to the hub."""

    def __init__(self, pool: Pool, hub: LiveHub, *, wake: Wake | None = None) -> None:
        super().__init__(pool, what="command transitions", query=_EVENTS, wake=wake)
        self._hub = hub

    def deliver(self, row: Mapping[str, Any]) -> None:
        """Push one transition, with the command as it is now."""
        command = command_from_row(row)
        message = CommandUpdateMessage(state=row["event_state"], at=row["event_at"], command=command)
        self._hub.publish_alert(command.device_id, SERVER_MESSAGES.encode(message))
