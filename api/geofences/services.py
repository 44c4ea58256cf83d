"""Geofences, their events and time inside, in PostgreSQL (tables of migration 0016)."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Final

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from api.geofences.document import FenceDocument
from api.geofences.schemas import DeviceTimeInside, Geofence, GeofenceEvent, GeofenceEventPage, TimeInside
from api.pool import Pool

_COLUMNS: Final = "id, name, geometry, properties, group_name, created_at, created_by, updated_at"
_LIST = f"SELECT {_COLUMNS} FROM geofences WHERE deleted_at IS NULL ORDER BY id"
_READ = f"SELECT {_COLUMNS} FROM geofences WHERE id = %s AND deleted_at IS NULL"
_INSERT = (
    "INSERT INTO geofences (name, geometry, properties, group_name, created_by) VALUES (%s, %s, %s, %s, %s)"
    f" RETURNING {_COLUMNS}"
)
_UPDATE = (
    "UPDATE geofences SET name = %s, geometry = %s, properties = %s, group_name = %s, updated_at = now()"
    f" WHERE id = %s AND deleted_at IS NULL RETURNING {_COLUMNS}"
)
_REMOVE = (
    "UPDATE geofences SET deleted_at = now(), updated_at = now() WHERE id = %s AND deleted_at IS NULL RETURNING id"
)
# Checked after the fence's row is locked by _REMOVE: a rule added meanwhile locks it too (FOR SHARE), so
# either the rule sees the fence removed, or the removal sees the rule.
_RULES_ON = "SELECT id FROM alert_rules WHERE fence_id = %s AND deleted_at IS NULL ORDER BY id"
_GROUP_EXISTS = "SELECT 1 FROM device_groups WHERE name = %s"
_DEVICE_EVENTS = (
    "SELECT e.id, e.device_id, e.fence_id, f.name AS fence_name, e.kind, e.ts, e.crossed"
    " FROM geofence_events e JOIN geofences f ON f.id = e.fence_id"
    " WHERE e.device_id = %(device)s AND e.ts >= %(since)s AND e.ts < %(until)s"
    " AND (%(cursor)s::bigint IS NULL OR (e.ts, e.id) > (SELECT ts, id FROM geofence_events WHERE id = %(cursor)s))"
    " ORDER BY e.ts, e.id LIMIT %(limit)s"
)
# Per device: the last event before the window (is it inside at `since`?), then the window's events.
_FENCE_EVENTS = (
    "(SELECT DISTINCT ON (device_id) device_id, kind, ts FROM geofence_events"
    " WHERE fence_id = %(fence)s AND ts < %(since)s ORDER BY device_id, ts DESC)"
    " UNION ALL (SELECT device_id, kind, ts FROM geofence_events"
    " WHERE fence_id = %(fence)s AND ts >= %(since)s AND ts < %(until)s)"
    " ORDER BY device_id, ts"
)
# How far each device's positions have been evaluated: an open stay is counted up to there, not to now.
_KNOWN_UNTIL = "SELECT device_id, ts FROM engine_fence_state WHERE device_id = ANY(%s)"
_IN_GROUP = "SELECT id FROM devices WHERE group_name = %s AND id = ANY(%s)"


def geofence_from_row(row: Mapping[str, Any]) -> Geofence:
    """The fence as a Feature, its server-kept fields among its properties."""
    properties = {
        **row["properties"],
        "name": row["name"],
        "group": row["group_name"],
        "created_at": row["created_at"],
        "created_by": row["created_by"],
        "updated_at": row["updated_at"],
    }
    return Geofence(id=row["id"], geometry=row["geometry"], properties=properties)


async def group_exists(pool: Pool, group: str) -> bool:
    """True when the device group exists."""
    async with pool.connection() as conn:
        cur = await conn.execute(_GROUP_EXISTS, (group,))
        return await cur.fetchone() is not None


async def list_geofences(pool: Pool) -> list[Geofence]:
    """Every fence not removed, by id."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_LIST)
        return [geofence_from_row(row) for row in await cur.fetchall()]


async def read_geofence(pool: Pool, fence_id: int) -> Geofence | None:
    """The fence, or None when there is none or it was removed."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_READ, (fence_id,))
        row = await cur.fetchone()
        return geofence_from_row(row) if row is not None else None


async def add_geofence(pool: Pool, fence: FenceDocument, created_by: str) -> Geofence:
    """Store a valid fence; the engine loads it on its next cycle."""
    params = (fence.name, Jsonb(fence.geometry), Jsonb(fence.properties), fence.group, created_by)
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_INSERT, params)
        row = await cur.fetchone()
        assert row is not None
        return geofence_from_row(row)


async def replace_geofence(pool: Pool, fence_id: int, fence: FenceDocument) -> Geofence | None:
    """Replace the fence's name, group and shape; None when there is no such fence."""
    params = (fence.name, Jsonb(fence.geometry), Jsonb(fence.properties), fence.group, fence_id)
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_UPDATE, params)
        row = await cur.fetchone()
        return geofence_from_row(row) if row is not None else None


class FenceInUseError(ValueError):
    """Alert rules name the fence: it cannot be removed before them."""

    def __init__(self, fence_id: int, rules: list[int]) -> None:
        names = ", ".join(map(str, rules))
        super().__init__(f"geofence {fence_id} is named by alert rules {names}: remove them first")


async def remove_geofence(pool: Pool, fence_id: int) -> bool:
    """Remove the fence (its events stay); False when there was no such fence. Raises `FenceInUseError`
    while an alert rule names it (its alerts could never clear)."""
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await cur.execute(_REMOVE, (fence_id,))
        if await cur.fetchone() is None:
            return False
        await cur.execute(_RULES_ON, (fence_id,))
        rules = [row[0] for row in await cur.fetchall()]
        if rules:
            raise FenceInUseError(fence_id, rules)
        return True


async def device_events(
    pool: Pool, device_id: str, since: datetime, until: datetime, *, cursor: int | None, limit: int
) -> GeofenceEventPage:
    """The device's enter and exit events with `since <= ts < until`, oldest first."""
    params = {"device": device_id, "since": since, "until": until, "cursor": cursor, "limit": limit + 1}
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_DEVICE_EVENTS, params)
        rows = await cur.fetchall()
    items = [GeofenceEvent(**row) for row in rows[:limit]]
    return GeofenceEventPage(items=items, next_cursor=items[-1].id if len(rows) > limit else None)


async def time_inside(pool: Pool, fence_id: int, since: datetime, until: datetime, group: str | None) -> TimeInside:
    """Per device, the time inside the fence during [since, until), from its enter and exit events.

    A stay still open counts up to the device's last evaluated point (or `until`, if earlier). `group`
    limits the devices to one group (an integrator's key limited to it)."""
    async with pool.connection() as conn:
        cur = await conn.execute(_FENCE_EVENTS, {"fence": fence_id, "since": since, "until": until})
        per_device: dict[str, list[tuple[str, datetime]]] = {}
        for device_id, kind, ts in await cur.fetchall():
            per_device.setdefault(device_id, []).append((kind, ts))
        if group is not None:
            cur = await conn.execute(_IN_GROUP, (group, list(per_device)))
            allowed = {row[0] for row in await cur.fetchall()}
            per_device = {d: e for d, e in per_device.items() if d in allowed}
        cur = await conn.execute(_KNOWN_UNTIL, (list(per_device),))
        known = {row[0]: row[1] for row in await cur.fetchall()}
    devices = []
    for device_id, events in sorted(per_device.items()):
        total, stays, inside_since = timedelta(), 0, None
        for kind, ts in events:
            if kind == "enter":
                inside_since = max(ts, since)  # the event before the window: inside at its start
                stays += 1
            elif inside_since is not None and ts >= since:
                total += ts - inside_since
                inside_since = None
        if inside_since is not None:
            end = min(until, known.get(device_id, until))
            total += max(timedelta(), end - inside_since)
        if total or stays:
            devices.append(
                DeviceTimeInside(
                    device_id=device_id,
                    seconds=total.total_seconds(),
                    visits=stays,
                    inside_at_end=inside_since is not None,
                )
            )
    return TimeInside(fence_id=fence_id, since=since, until=until, devices=devices)
