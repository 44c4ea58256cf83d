"""Presence rules ("offline for more than N s"), decided from the registry's presence in one statement
each, for the devices of the partitions this instance holds.

The bridge keeps `devices.presence` and `presence_since` (its Last Will and heartbeat sweep decide them,
docs/architecture.md#presence). An alert is raised for a device offline since `presence_since` for
longer than the rule's `for_s`, with that `presence_since` as its start: the natural key (rule, device,
start) and `ON CONFLICT DO NOTHING` make a repeat, by this instance after a crash or by another after a
takeover, write nothing. It is cleared once the device is online again (or offline since another time),
at the time its presence changed. Each statement writes the `alert_events` of exactly the rows it
changed, in its own transaction.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from typing import Any, Final

import psycopg

from engine.rules import Rule

_SCOPE: Final = (
    "(r.device_id IS NULL OR r.device_id = d.id) AND (r.kind IS NULL OR r.kind = d.kind)"
    " AND (r.group_name IS NULL OR r.group_name = d.group_name)"
    " AND (hashtextextended(d.id, 0) & 15) = ANY(%(parts)s::int[])"
)
_RAISE: Final = (
    "WITH raised AS (INSERT INTO alerts (rule_id, device_id, started_at, raised_at, severity, state, message)"
    " SELECT r.id, d.id, d.presence_since, d.presence_since + make_interval(secs => r.for_s), r.severity,"
    " 'active', r.name || ': offline for more than ' || r.for_s || ' s'"
    " FROM alert_rules r JOIN devices d ON d.presence = 'offline' AND NOT d.disabled"
    " AND d.presence_since <= now() - make_interval(secs => r.for_s)"
    f" WHERE r.id = ANY(%(rules)s) AND r.deleted_at IS NULL AND {_SCOPE}"
    " ON CONFLICT DO NOTHING RETURNING id)"
    " INSERT INTO alert_events (alert_id, kind) SELECT id, 'raised' FROM raised"
)
_CLEAR: Final = (
    "WITH cleared AS (UPDATE alerts a SET state = 'cleared', cleared_at = d.presence_since,"
    " clear_reason = 'condition', updated_at = now() FROM alert_rules r, devices d"
    " WHERE a.rule_id = r.id AND a.device_id = d.id AND a.state IN ('active', 'acknowledged')"
    f" AND r.id = ANY(%(rules)s) AND {_SCOPE}"
    " AND (d.presence IS DISTINCT FROM 'offline' OR d.presence_since IS DISTINCT FROM a.started_at)"
    " RETURNING a.id)"
    " INSERT INTO alert_events (alert_id, kind) SELECT id, 'cleared' FROM cleared"
)


async def sweep_presence(conn: psycopg.AsyncConnection[Any], parts: Collection[int], rules: Sequence[Rule]) -> int:
    """Raise and clear the presence alerts of the devices in `parts`; return how many changed."""
    ids = [r.id for r in rules if r.on_presence]
    if not ids or not parts:
        return 0
    params = {"rules": ids, "parts": sorted(parts)}
    changed = 0
    async with conn.transaction(), conn.cursor() as cur:
        for statement in (_CLEAR, _RAISE):
            await cur.execute(statement, params)
            changed += max(cur.rowcount, 0)
    return changed
