"""HTTP endpoints of the device registry and last-known state."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter
from redis.asyncio import Redis

from api.auth import may_see_device, principal_of
from api.backends import Pool
from api.devices.schemas import DevicePage
from api.devices.services import DEVICES_PAGE_DEFAULT, DEVICES_PAGE_MAX, list_devices, read_state
from api.problems import bad_request, not_found
from models.state import DeviceState
from models.topics import DEVICE_ID_PATTERN, is_device_id


class DeviceController(Controller):
    """`/devices`: the registry in PostgreSQL and each device's state cached in Redis."""

    path = "/devices"
    tags = ("devices",)

    @get("/", summary="List devices")
    async def page(
        self,
        *,
        request: Request[Any, Any, Any],
        pool: NamedDependency[Pool],
        limit: Annotated[
            int, QueryParameter(ge=1, le=DEVICES_PAGE_MAX, description="rows per page")
        ] = DEVICES_PAGE_DEFAULT,
        cursor: Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page")] = None,
    ) -> DevicePage:
        """Devices in id order, a page at a time (for a group-limited API key: its group's devices only)."""
        if cursor is not None and not is_device_id(cursor):
            raise bad_request("cursor is not valid; pass next_cursor of the previous page unchanged")
        return await list_devices(pool, limit=limit, after=cursor, group=principal_of(request).group)

    @get("/{device_id:str}/state", summary="Last-known state of a device")
    async def state(
        self,
        request: Request[Any, Any, Any],
        redis: NamedDependency[Redis],
        pool: NamedDependency[Pool],
        device_id: FromPath[str],
    ) -> DeviceState:
        """The newest value of every state field, each with the device time and seq that set it."""
        if not is_device_id(device_id):
            raise bad_request(f"device id {device_id!r} does not match {DEVICE_ID_PATTERN}")
        missing = not_found(f"no state for device {device_id!r}")
        if not await may_see_device(principal_of(request), pool, device_id):
            raise missing
        state = await read_state(redis, device_id)
        if state is None:
            raise missing
        return state
