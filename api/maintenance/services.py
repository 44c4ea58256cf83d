"""Maintenance schedules and log in PostgreSQL. A schedule is stored with its own alert rule (op
'maintenance') in one transaction; the rules engine raises and clears its alerts (engine/maintenance.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from psycopg.rows import dict_row

from api.maintenance.schemas import DeviceMaintenance, LogEntry, LogPost, Schedule, SchedulePost, ScheduleStatus
from api.pool import Pool
from models.maintenance import USED_BY_DEVICE
from models.rule_store import CLEAR_RULE_ALERTS

_SCHEDULE_COLUMNS: Final = (
    "m.id, m.rule_id, m.name, m.basis, m.every, m.device_id AS device, m.kind, m.group_name AS group,"
    " r.severity, m.created_at, m.created_by"
)
_SCHEDULES: Final = (
    f"SELECT {_SCHEDULE_COLUMNS} FROM maintenance_schedules m JOIN alert_rules r ON r.id = m.rule_id"
    " WHERE m.deleted_at IS NULL"
)
_LOG: Final = (
    "SELECT l.id, l.schedule_id, m.name AS schedule_name, l.device_id, l.done_at, l.done_by, l.notes, l.odometer"
    " FROM maintenance_log l JOIN maintenance_schedules m ON m.id = l.schedule_id"
    " WHERE l.device_id = %s ORDER BY l.done_at DESC, l.id DESC LIMIT 200"
)
_LATEST_ODOMETER: Final = (
    "SELECT odometer FROM telemetry WHERE device_id = %s AND odometer IS NOT NULL ORDER BY ts DESC LIMIT 1"
)


def _schedule(row: Mapping[str, Any]) -> Schedule:
    return Schedule(**dict(row))


async def create_schedule(pool: Pool, post: SchedulePost, who: str) -> Schedule:
    """Store the schedule and its alert rule."""
    async with pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "INSERT INTO alert_rules (name, metric, op, threshold, severity, device_id, kind, group_name, created_by)"
            " VALUES (%s, %s, 'maintenance', %s, %s, %s, %s, %s, %s) RETURNING id",
            (
                post.name,
                "odometer" if post.basis == "odometer" else "calendar",
                post.every,
                post.severity,
                post.device,
                post.kind,
                post.group,
                who,
            ),
        )
        rule = await cur.fetchone()
        assert rule is not None
        await cur.execute(
            "INSERT INTO maintenance_schedules (rule_id, name, basis, every, device_id, kind, group_name, created_by)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s) RETURNING id",
            (rule["id"], post.name, post.basis, post.every, post.device, post.kind, post.group, who),
        )
        made = await cur.fetchone()
        assert made is not None
        await cur.execute(f"{_SCHEDULES} AND m.id = %s", (made["id"],))
        row = await cur.fetchone()
    assert row is not None
    return _schedule(row)


async def list_schedules(pool: Pool) -> list[Schedule]:
    """Every schedule in force."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"{_SCHEDULES} ORDER BY m.id")
        return [_schedule(row) for row in await cur.fetchall()]


async def remove_schedule(pool: Pool, schedule_id: int, who: str) -> bool:
    """End a schedule and clear its open alerts; False when there is none."""
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await cur.execute(
            "UPDATE maintenance_schedules SET deleted_at = now() WHERE id = %s AND deleted_at IS NULL RETURNING rule_id",
            (schedule_id,),
        )
        row = await cur.fetchone()
        if row is None:
            return False
        await cur.execute("UPDATE alert_rules SET deleted_at = now() WHERE id = %s", (row[0],))
        await cur.execute(CLEAR_RULE_ALERTS, (who, row[0]))
    return True


async def log_service(pool: Pool, device_id: str, post: LogPost, who: str) -> LogEntry | None:
    """Record a service done; None when the schedule does not exist (or ended)."""
    async with pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "SELECT 1 FROM maintenance_schedules WHERE id = %s AND deleted_at IS NULL", (post.schedule_id,)
        )
        if await cur.fetchone() is None:
            return None
        odometer = post.odometer
        if odometer is None:
            await cur.execute(_LATEST_ODOMETER, (device_id,))
            latest = await cur.fetchone()
            odometer = None if latest is None else float(latest["odometer"])
        await cur.execute(
            "INSERT INTO maintenance_log (schedule_id, device_id, done_at, done_by, notes, odometer)"
            " VALUES (%s, %s, coalesce(%s, now()), %s, %s, %s) RETURNING id",
            (post.schedule_id, device_id, post.done_at, who, post.notes, odometer),
        )
        row = await cur.fetchone()
        assert row is not None
        await cur.execute(f"{_LOG.replace('ORDER BY', 'AND l.id = %s ORDER BY')}", (device_id, row["id"]))
        entry = await cur.fetchone()
    assert entry is not None
    return LogEntry(**dict(entry))


async def device_maintenance(pool: Pool, device_id: str) -> DeviceMaintenance:
    """The device's schedules with where it stands on each, and its log."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(USED_BY_DEVICE, {"device": device_id})
        schedules = [
            ScheduleStatus(
                schedule_id=row["schedule_id"],
                name=row["name"],
                basis=row["basis"],
                every=row["every"],
                since=row["since"],
                used=None if row["used"] is None else round(float(row["used"]), 3),
                due=row["used"] is not None and float(row["used"]) >= row["every"],
            )
            for row in await cur.fetchall()
        ]
        await cur.execute(_LOG, (device_id,))
        log = [LogEntry(**dict(row)) for row in await cur.fetchall()]
    return DeviceMaintenance(device_id=device_id, schedules=schedules, log=log)
