"""Maintenance alerts: a schedule's service is due once its device has driven `every` km (odometer) or
`every` days have passed (calendar) since the newest log entry of that schedule and device, or since the
schedule was made. Decided in one statement each, for the devices of the partitions this instance holds,
like presence rules (engine/presence.py).

The alert's start is the start of the service interval (the log entry's time, or the schedule's): the
natural key (rule, device, start) makes a repeat — this instance after a crash, another after a takeover —
write nothing, so a due service raises exactly one alert per interval. A log entry newer than that start
clears it ("condition": the service was done), and the next interval counts from the entry, so the
schedule fires again when the next interval is used up.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

import psycopg

from models.maintenance import USED_IN_PARTS

_RAISE: Final = (
    f"WITH u AS ({USED_IN_PARTS}), raised AS ("
    " INSERT INTO alerts (rule_id, device_id, started_at, raised_at, severity, state, message, value)"
    " SELECT rule_id, device_id, since, now(), severity, 'active',"
    " name || ': service due (' || round(used::numeric, 1) || CASE basis WHEN 'odometer' THEN ' km' ELSE ' days' END"
    " || ' since the last, every ' || every || CASE basis WHEN 'odometer' THEN ' km)' ELSE ' days)' END, used"
    " FROM u WHERE used >= every ON CONFLICT DO NOTHING RETURNING id)"
    " INSERT INTO alert_events (alert_id, kind) SELECT id, 'raised' FROM raised"
)
_CLEAR: Final = (
    "WITH done AS (SELECT a.id, l.done_at FROM alerts a JOIN maintenance_schedules m ON m.rule_id = a.rule_id"
    " JOIN LATERAL (SELECT max(done_at) AS done_at FROM maintenance_log"
    "   WHERE schedule_id = m.id AND device_id = a.device_id) l ON true"
    " WHERE a.state IN ('active', 'acknowledged') AND l.done_at > a.started_at"
    " AND (hashtextextended(a.device_id, 0) & 15) = ANY(%(parts)s::int[])),"
    " cleared AS (UPDATE alerts SET state = 'cleared', cleared_at = done.done_at, clear_reason = 'condition',"
    " updated_at = now() FROM done WHERE alerts.id = done.id RETURNING alerts.id)"
    " INSERT INTO alert_events (alert_id, kind) SELECT id, 'cleared' FROM cleared"
)


async def sweep_maintenance(conn: psycopg.AsyncConnection[tuple[object, ...]], held: Collection[int]) -> int:
    """Clear what a log entry settled, raise what came due; the number of alerts changed."""
    if not held:
        return 0
    parts = sorted(held)
    changed = 0
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(_CLEAR, {"parts": parts})
        changed += max(0, cur.rowcount)
        await cur.execute(_RAISE, {"parts": parts})
        changed += max(0, cur.rowcount)
    return changed
