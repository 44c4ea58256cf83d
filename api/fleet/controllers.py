"""HTTP endpoint of fleet state: `GET /state`, the last-known state of many devices in one answer."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import QueryParameter
from redis.asyncio import Redis

from api.auth import principal_of
from api.devices.schemas import GROUP_PATTERN, KIND_PATTERN
from api.fleet.bbox import BoundingBox, BoxError
from api.fleet.schemas import FleetStatePage
from api.fleet.services import FLEET_IDS_MAX, FLEET_PAGE_DEFAULT, FLEET_PAGE_MAX, FleetFilter, fleet_state
from api.pool import Pool
from api.problems import bad_request
from models.topics import DEVICE_ID_PATTERN, is_device_id


def _parse_ids(text: str) -> list[str]:
    ids = [part for part in text.split(",") if part]
    if not ids or len(ids) > FLEET_IDS_MAX:
        raise bad_request(f"ids holds 1 to {FLEET_IDS_MAX} comma-separated device ids")
    for device_id in ids:
        if not is_device_id(device_id):
            raise bad_request(f"device id {device_id!r} does not match {DEVICE_ID_PATTERN}")
    return ids


@get("/state", summary="Last-known state of many devices", tags=["devices"])
async def state(
    *,
    request: Request[Any, Any, Any],
    pool: NamedDependency[Pool],
    redis: NamedDependency[Redis],
    group: Annotated[str | None, QueryParameter(pattern=GROUP_PATTERN, description="only this group")] = None,
    kind: Annotated[str | None, QueryParameter(pattern=KIND_PATTERN, description="only this kind")] = None,
    ids: Annotated[
        str | None, QueryParameter(description=f"only these devices: 1 to {FLEET_IDS_MAX} comma-separated ids")
    ] = None,
    bbox: Annotated[
        str | None,
        QueryParameter(description="only devices whose last position is inside min_lon,min_lat,max_lon,max_lat"),
    ] = None,
    limit: Annotated[
        int, QueryParameter(ge=1, le=FLEET_PAGE_MAX, description="registry devices examined per page")
    ] = FLEET_PAGE_DEFAULT,
    cursor: Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page")] = None,
) -> FleetStatePage:
    """The state of every matching device that has one, in id order, a page at a time (for a group-limited
    API key: its group's devices only)."""
    if cursor is not None and not is_device_id(cursor):
        raise bad_request("cursor is not valid; pass next_cursor of the previous page unchanged")
    try:
        box = BoundingBox.parse(bbox) if bbox is not None else None
    except BoxError as exc:
        raise bad_request(str(exc)) from None
    where = FleetFilter(group=group, kind=kind, ids=_parse_ids(ids) if ids is not None else None, bbox=box)
    return await fleet_state(
        pool, redis, where=where, limit=limit, after=cursor, visible_group=principal_of(request).group
    )
