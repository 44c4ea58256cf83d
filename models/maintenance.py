"""How much of each maintenance interval a device has used: the SQL the rules engine raises due services
from (engine/maintenance.py) and the API shows a device's schedules with (api/maintenance/), one
definition for both (docs/maintenance.md)."""

from __future__ import annotations

from typing import Final

# Per schedule and device in scope: where the interval started, and how much of it is used. Odometer
# readings are the device's own (the latest, and the first at or after the interval's start when the log
# entry did not record one).
_USED_COLUMNS: Final = (
    "SELECT m.id AS schedule_id, m.rule_id, m.every, m.basis, r.severity, r.name, d.id AS device_id,"
    " coalesce(l.done_at, m.created_at) AS since,"
    " CASE WHEN m.basis = 'odometer' THEN"
    "   (SELECT t.odometer FROM telemetry t WHERE t.device_id = d.id AND t.odometer IS NOT NULL"
    "    ORDER BY t.ts DESC LIMIT 1)"
    "   - coalesce(l.odometer, (SELECT t.odometer FROM telemetry t WHERE t.device_id = d.id"
    "    AND t.odometer IS NOT NULL AND t.ts >= coalesce(l.done_at, m.created_at) ORDER BY t.ts LIMIT 1))"
    " ELSE extract(epoch FROM now() - coalesce(l.done_at, m.created_at)) / 86400 END AS used"
    " FROM maintenance_schedules m JOIN alert_rules r ON r.id = m.rule_id AND r.deleted_at IS NULL"
    " JOIN devices d ON NOT d.disabled AND (m.device_id IS NULL OR m.device_id = d.id)"
    " AND (m.kind IS NULL OR m.kind = d.kind) AND (m.group_name IS NULL OR m.group_name = d.group_name)"
)
_USED_FROM: Final = (
    " LEFT JOIN LATERAL (SELECT done_at, odometer FROM maintenance_log"
    "   WHERE schedule_id = m.id AND device_id = d.id ORDER BY done_at DESC LIMIT 1) l ON true"
    " WHERE m.deleted_at IS NULL"
)
USED_IN_PARTS: Final = f"{_USED_COLUMNS} AND (hashtextextended(d.id, 0) & 15) = ANY(%(parts)s::int[]){_USED_FROM}"
# The same for one device (its maintenance page, api/maintenance/).
USED_BY_DEVICE: Final = f"{_USED_COLUMNS} AND d.id = %(device)s{_USED_FROM} ORDER BY m.id"
