"""HTTP endpoints of device health: a device's score with its parts, and a group's summary (docs/health.md)."""

from __future__ import annotations

from typing import Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath

from api.auth import may_see_device, principal_of
from api.device_health.services import DeviceHealth, GroupHealth, device_health, group_health
from api.pool import Pool
from api.problems import not_found


@get("/devices/{device_id:str}/health", tags=["devices"], summary="A device's health score")
async def device_health_score(
    request: Request[Any, Any, Any], pool: NamedDependency[Pool], device_id: FromPath[str]
) -> DeviceHealth:
    """0 to 100, with the parts that take points off (open alerts by severity, time offline over the last
    7 days, a rising engine-temperature or vibration baseline over the last 14 days), largest first."""
    if not await may_see_device(principal_of(request), pool, device_id):
        raise not_found(f"no device {device_id!r}")
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.execute("SELECT 1 FROM devices WHERE id = %s", (device_id,))
        if await cur.fetchone() is None:
            raise not_found(f"no device {device_id!r}")
    health = await device_health(pool, device_id)
    return DeviceHealth(device_id=device_id, score=health.score, parts=list(health.parts))


@get("/groups/{name:str}/health", tags=["groups"], summary="A group's health")
async def group_health_summary(
    request: Request[Any, Any, Any], pool: NamedDependency[Pool], name: FromPath[str]
) -> GroupHealth:
    """How many of the group's devices score good, fair and poor, the average, and the ten worst."""
    visible = principal_of(request).group
    if visible is not None and visible != name:
        raise not_found(f"no group {name!r}")
    return await group_health(pool, name)
