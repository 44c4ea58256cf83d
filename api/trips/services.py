"""Trips, stops and idle intervals in PostgreSQL, as the engine stored them: listed per device by start
time, and summed per day for a device or a group (`models.trip_summary`)."""

from __future__ import annotations

from collections import defaultdict
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final, Literal

from api.pool import Pool
from models.trip_summary import DailySummary, daily_summary, group_summary
from models.trips import Idle, Place, Stop, Trip, TripReport

PAGE_MAX: Final = 1000
PAGE_DEFAULT: Final = 100

Kind = Literal["trips", "stops", "idle_periods"]

_COLUMNS: Final[dict[Kind, str]] = {
    "trips": "device_id, started_at, ended_at, start_lat, start_lon, end_lat, end_lon, distance_m, duration_s,"
    " max_speed_kmh, avg_speed_kmh, fuel_used_pct, from_odometer, complete",
    "stops": "device_id, started_at, ended_at, lat, lon, duration_s, complete",
    "idle_periods": "device_id, started_at, ended_at, lat, lon, duration_s",
}
# One device's items by start time; `cursor` is the start of the last item of the previous page.
_PAGE: Final = {
    kind: f"SELECT {columns} FROM {kind} WHERE device_id = %(device)s"
    " AND started_at >= COALESCE(%(since)s, '-infinity'::timestamptz)"
    " AND started_at < COALESCE(%(until)s, 'infinity'::timestamptz)"
    " AND started_at > COALESCE(%(cursor)s, '-infinity'::timestamptz)"
    " ORDER BY started_at LIMIT %(limit)s"
    for kind, columns in _COLUMNS.items()
}
# The items of the given devices that overlap a day: those that start in it, and the one that started
# last before it if it ends inside (items of one kind never overlap one another on one device, so no
# earlier one can). Both are index ranges of the key: a device's years of history are not scanned.
_DAY: Final = {
    kind: f"SELECT {columns} FROM {kind} WHERE device_id = ANY(%(devices)s)"
    " AND started_at >= %(day_start)s AND started_at < %(day_end)s"
    " UNION ALL SELECT earlier.* FROM unnest(%(devices)s::text[]) AS d(id) CROSS JOIN LATERAL"
    f" (SELECT {columns} FROM {kind} WHERE device_id = d.id AND started_at < %(day_start)s"
    " ORDER BY started_at DESC LIMIT 1) AS earlier WHERE earlier.ended_at > %(day_start)s"
    for kind, columns in _COLUMNS.items()
}
_VISIBLE_DEVICE: Final = "SELECT 1 FROM devices WHERE id = %s AND (%s::text IS NULL OR group_name = %s)"
_GROUP_DEVICES: Final = "SELECT id FROM devices WHERE group_name = %s ORDER BY id"
_GROUP_DESCRIBED: Final = "SELECT 1 FROM device_groups WHERE name = %s"


def _item(kind: Kind, row: tuple[Any, ...]) -> Trip | Stop | Idle:
    if kind == "trips":
        device, start, end, slat, slon, elat, elon, distance, duration, vmax, vavg, fuel, odometer, complete = row
        return Trip(
            device_id=device,
            start_at=start,
            end_at=end,
            start=Place(slat, slon),
            end=Place(elat, elon),
            distance_m=distance,
            duration_s=duration,
            max_speed_kmh=vmax,
            avg_speed_kmh=vavg,
            fuel_used_pct=fuel,
            from_odometer=odometer,
            complete=complete,
        )
    if kind == "stops":
        device, start, end, lat, lon, duration, complete = row
        return Stop(
            device_id=device, start_at=start, end_at=end, place=Place(lat, lon), duration_s=duration, complete=complete
        )
    device, start, end, lat, lon, duration = row
    return Idle(device_id=device, start_at=start, end_at=end, place=Place(lat, lon), duration_s=duration)


async def device_visible(pool: Pool, device_id: str, visible_group: str | None) -> bool:
    """Whether the device is registered and, for a group-limited caller, in its group."""
    async with pool.connection() as conn:
        cur = await conn.execute(_VISIBLE_DEVICE, (device_id, visible_group, visible_group))
        return await cur.fetchone() is not None


async def list_items(
    pool: Pool,
    kind: Kind,
    device_id: str,
    *,
    since: datetime | None,
    until: datetime | None,
    cursor: datetime | None,
    limit: int,
) -> tuple[list[Any], datetime | None]:
    """A page of the device's items of `kind` and the cursor of the next page (None: no more)."""
    params = {"device": device_id, "since": since, "until": until, "cursor": cursor, "limit": limit + 1}
    async with pool.connection() as conn:
        cur = await conn.execute(_PAGE[kind], params)
        rows = await cur.fetchall()
    items = [_item(kind, row) for row in rows[:limit]]
    return items, items[-1].start_at if len(rows) > limit else None


async def _reports(pool: Pool, devices: list[str], day: date) -> dict[str, TripReport]:
    params = {
        "devices": devices,
        "day_start": datetime.combine(day, time(), UTC),
        "day_end": datetime.combine(day + timedelta(days=1), time(), UTC),
    }
    found: dict[Kind, defaultdict[str, list[Any]]] = {kind: defaultdict(list) for kind in _DAY}
    async with pool.connection() as conn:
        for kind, statement in _DAY.items():
            cur = await conn.execute(statement, params)
            for row in await cur.fetchall():
                found[kind][row[0]].append(_item(kind, row))
    return {
        device: TripReport(
            trips=found["trips"][device], stops=found["stops"][device], idles=found["idle_periods"][device]
        )
        for device in devices
    }


async def device_day(pool: Pool, device_id: str, day: date) -> DailySummary:
    """The device's day (UTC) from its stored trips, stops and idle intervals."""
    report = (await _reports(pool, [device_id], day))[device_id]
    return daily_summary(device_id, report, day)


async def group_day(pool: Pool, group: str, day: date) -> DailySummary | None:
    """The sum of the day (UTC) over the group's devices; None when no device names the group and it
    is not described either."""
    async with pool.connection() as conn:
        cur = await conn.execute(_GROUP_DEVICES, (group,))
        devices = [row[0] for row in await cur.fetchall()]
        if not devices:
            cur = await conn.execute(_GROUP_DESCRIBED, (group,))
            if await cur.fetchone() is None:
                return None
    reports = await _reports(pool, devices, day)
    return group_summary(day, (daily_summary(device, reports[device], day) for device in devices))
