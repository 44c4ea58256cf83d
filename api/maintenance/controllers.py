"""HTTP endpoints of maintenance: schedules made and ended by operators and admins, a device's services
logged by them, read by every role (docs/maintenance.md)."""

from __future__ import annotations

from typing import Any

from litestar import Controller, Request, delete, get, post
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from api.auth import OPERATOR, may_see_device, principal_of
from api.maintenance.schemas import DeviceMaintenance, LogEntry, LogPost, Schedule, SchedulePost
from api.maintenance.services import (
    create_schedule,
    device_maintenance,
    list_schedules,
    log_service,
    remove_schedule,
)
from api.pool import Pool
from api.problems import bad_request, not_found


class ScheduleController(Controller):
    """`/maintenance-schedules`: services due by odometer or calendar, raised as alerts by the rules engine."""

    path = "/maintenance-schedules"
    tags = ("maintenance",)

    @post("/", summary="Add a maintenance schedule", status_code=HTTP_201_CREATED, opt=OPERATOR)
    async def add(
        self, request: Request[Any, Any, Any], pool: NamedDependency[Pool], data: JSONBody[SchedulePost]
    ) -> Schedule:
        """A service every `every` km (odometer) or days (calendar), for a device, a kind, a group or every
        device (at most one of the three); the engine raises an alert when a device's service falls due."""
        if sum(x is not None for x in (data.device, data.kind, data.group)) > 1:
            raise bad_request("name at most one of device, kind and group")
        return await create_schedule(pool, data, principal_of(request).name)

    @get("/", summary="Maintenance schedules")
    async def page(self, pool: NamedDependency[Pool]) -> list[Schedule]:
        """Every schedule in force."""
        return await list_schedules(pool)

    @delete("/{schedule_id:int}", summary="End a maintenance schedule", status_code=HTTP_204_NO_CONTENT, opt=OPERATOR)
    async def remove(
        self, request: Request[Any, Any, Any], pool: NamedDependency[Pool], schedule_id: FromPath[int]
    ) -> None:
        """End the schedule; its open alerts are cleared (reason `rule_removed`). 404 when there is none."""
        if not await remove_schedule(pool, schedule_id, principal_of(request).name):
            raise not_found(f"no maintenance schedule {schedule_id}")


class DeviceMaintenanceController(Controller):
    """`/devices/{id}/maintenance`: where a device stands on its schedules, and its maintenance log."""

    path = "/devices/{device_id:str}/maintenance"
    tags = ("maintenance",)

    @get("/", summary="A device's maintenance")
    async def details(
        self, request: Request[Any, Any, Any], pool: NamedDependency[Pool], device_id: FromPath[str]
    ) -> DeviceMaintenance:
        """Each schedule that applies to the device (since when its interval runs, how much is used, due or
        not), and the services logged, newest first."""
        if not await may_see_device(principal_of(request), pool, device_id):
            raise not_found(f"no device {device_id!r}")
        return await device_maintenance(pool, device_id)

    @post("/", summary="Log a service", status_code=HTTP_201_CREATED, opt=OPERATOR)
    async def log(
        self,
        request: Request[Any, Any, Any],
        pool: NamedDependency[Pool],
        device_id: FromPath[str],
        data: JSONBody[LogPost],
    ) -> LogEntry:
        """A service done on the device: it clears the schedule's due alert (the engine, within seconds) and
        its next interval counts from now (or `done_at`), from the odometer reading given or the latest."""
        principal = principal_of(request)
        if not await may_see_device(principal, pool, device_id):
            raise not_found(f"no device {device_id!r}")
        async with pool.connection() as conn, conn.cursor() as cur:
            await cur.execute("SELECT 1 FROM devices WHERE id = %s", (device_id,))
            if await cur.fetchone() is None:
                raise not_found(f"no device {device_id!r}")
        entry = await log_service(pool, device_id, data, principal.name)
        if entry is None:
            raise bad_request(f"no maintenance schedule {data.schedule_id}")
        return entry
