"""What a device's health score is computed from, read from PostgreSQL: open alerts, presence history and
the hourly rollups' daily averages (`models.health` does the scoring)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any, Final

import msgspec
from psycopg import AsyncCursor

from api.pool import Pool
from models.health import PRESENCE_DAYS, TREND_DAYS, Health, HealthInputs, HealthPart, score

GROUP_DEVICES_MAX: Final = 2000
WORST_LISTED: Final = 10

# Open alerts by severity; those of maintenance schedules apart (they are services due, not faults).
_ALERTS = (
    "SELECT CASE WHEN r.op = 'maintenance' THEN 'maintenance' ELSE a.severity END, count(*)"
    " FROM alerts a JOIN alert_rules r ON r.id = a.rule_id"
    " WHERE a.device_id = %s AND a.state IN ('active', 'acknowledged') GROUP BY 1"
)
# Presence intervals over the window: the changes inside it, and the presence it started with.
_PRESENCE = (
    "WITH h AS ("
    " SELECT at, presence FROM presence_history WHERE device_id = %(d)s AND at >= %(since)s"
    " UNION ALL (SELECT %(since)s, presence FROM presence_history WHERE device_id = %(d)s AND at < %(since)s"
    " ORDER BY at DESC LIMIT 1)),"
    " o AS (SELECT presence, at, lead(at, 1, %(now)s) OVER (ORDER BY at) AS until FROM h)"
    " SELECT coalesce(sum(extract(epoch FROM until - at)) FILTER (WHERE presence = 'online'), 0),"
    " sum(extract(epoch FROM until - at)) FROM o"
)
_DAILY = (
    "SELECT date_trunc('day', ts) AS day,"
    " sum(engine_temp_sum) / nullif(sum(engine_temp_n), 0), sum(vibration_sum) / nullif(sum(vibration_n), 0)"
    " FROM telemetry_1h WHERE device_id = %s AND ts >= %s GROUP BY 1 ORDER BY 1"
)


class DeviceHealth(msgspec.Struct, frozen=True, kw_only=True):
    """A device's health: its score out of 100 and the parts that explain it, largest first."""

    device_id: str
    score: float
    parts: list[HealthPart]


class GroupHealthDevice(msgspec.Struct, frozen=True, kw_only=True):
    """One device of a group summary: its score and what weighs most on it."""

    device_id: str
    score: float
    main_reason: str | None


class GroupHealth(msgspec.Struct, frozen=True, kw_only=True):
    """A group's health: how many devices score good (80 and above), fair (50 to 80) or poor (below 50),
    the average, and the worst devices."""

    group: str
    devices: int
    average: float | None
    good: int
    fair: int
    poor: int
    worst: list[GroupHealthDevice]


async def device_health(pool: Pool, device_id: str, now: datetime | None = None) -> Health:
    """The device's health now."""
    async with pool.connection() as conn, conn.cursor() as cur:
        return score(await _inputs(cur, device_id, now or datetime.now(UTC)))


async def group_health(pool: Pool, group: str, now: datetime | None = None) -> GroupHealth:
    """The health of the group's devices (the first GROUP_DEVICES_MAX by id)."""
    now = now or datetime.now(UTC)
    scored: list[GroupHealthDevice] = []
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.execute(
            "SELECT id FROM devices WHERE group_name = %s AND NOT disabled ORDER BY id LIMIT %s",
            (group, GROUP_DEVICES_MAX),
        )
        ids = [str(row[0]) for row in await cur.fetchall()]
        for device_id in ids:
            health = score(await _inputs(cur, device_id, now))
            top = health.parts[0] if health.parts and health.parts[0].points > 0 else None
            scored.append(
                GroupHealthDevice(
                    device_id=device_id, score=health.score, main_reason=None if top is None else top.name
                )
            )
    values = [d.score for d in scored]
    return GroupHealth(
        group=group,
        devices=len(scored),
        average=round(sum(values) / len(values), 1) if values else None,
        good=sum(1 for v in values if v >= 80),
        fair=sum(1 for v in values if 50 <= v < 80),
        poor=sum(1 for v in values if v < 50),
        worst=sorted(scored, key=lambda d: (d.score, d.device_id))[:WORST_LISTED],
    )


async def _inputs(cur: AsyncCursor[Any], device_id: str, now: datetime) -> HealthInputs:
    await cur.execute(_ALERTS, (device_id,))
    alerts = {str(severity): int(count) for severity, count in await cur.fetchall()}
    services_due = alerts.pop("maintenance", 0)
    await cur.execute(_PRESENCE, {"d": device_id, "since": now - timedelta(days=PRESENCE_DAYS), "now": now})
    row = await cur.fetchone()
    online_share = None
    if row is not None and row[1]:
        online_share = float(row[0]) / float(row[1])
    await cur.execute(_DAILY, (device_id, now - timedelta(days=TREND_DAYS)))
    days = await cur.fetchall()
    return HealthInputs(
        open_alerts=alerts,
        online_share=online_share,
        engine_temp_daily=[float(d[1]) for d in days if d[1] is not None],
        vibration_daily=[float(d[2]) for d in days if d[2] is not None],
        services_due=services_due,
    )
