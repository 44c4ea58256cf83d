"""HTTP endpoints of geofences: read by every role, written by operators and admins; a device's enter and
exit events; time inside a fence per device."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated, Any, Final

from litestar import Controller, Request, delete, get, post, put
from litestar.di import NamedDependency
from litestar.params import FromPath, JSONBody, QueryParameter
from litestar.status_codes import HTTP_201_CREATED, HTTP_204_NO_CONTENT

from api.auth import OPERATOR, may_see_device, principal_of
from api.geofences.document import FenceDocument, read_document
from api.geofences.schemas import Geofence, GeofenceCollection, GeofenceEventPage, TimeInside
from api.geofences.services import (
    FenceInUseError,
    add_geofence,
    device_events,
    group_exists,
    list_geofences,
    read_geofence,
    remove_geofence,
    replace_geofence,
    time_inside,
)
from api.pool import Pool
from api.problems import ConflictException, bad_request, conflict, not_found
from models.telemetry import utcnow
from models.topics import DEVICE_ID_PATTERN, is_device_id

EVENTS_PAGE_DEFAULT: Final = 100
EVENTS_PAGE_MAX: Final = 1000
DEFAULT_WINDOW: Final = timedelta(hours=24)

Since = Annotated[datetime | None, QueryParameter(description="ISO-8601 with time zone; default: 24 h before `until`")]
Until = Annotated[datetime | None, QueryParameter(description="ISO-8601 with time zone; default: now")]


def _window(since: datetime | None, until: datetime | None) -> tuple[datetime, datetime]:
    for name, value in (("since", since), ("until", until)):
        if value is not None and value.tzinfo is None:
            raise bad_request(f"`{name}` needs a time zone (`Z` or an offset)")
    end = until or utcnow()
    try:
        start = since or end - DEFAULT_WINDOW
    except OverflowError:
        raise bad_request("`until` is too early for the default window: give `since`") from None
    if start >= end:
        raise bad_request("`since` must be before `until`")
    return start, end


async def _valid(pool: Pool, document: dict[str, Any]) -> FenceDocument:
    fence = read_document(document)
    if isinstance(fence, str):
        raise bad_request(fence)
    if fence.group is not None and not await group_exists(pool, fence.group):
        raise bad_request(f"no device group {fence.group!r}")
    return fence


class GeofenceController(Controller):
    """`/geofences`: fences as GeoJSON Features; a change reaches the engine on its next cycle."""

    path = "/geofences"
    tags = ("geofences",)

    @get("/", summary="List geofences")
    async def collection(self, pool: NamedDependency[Pool]) -> GeofenceCollection:
        """Every fence not removed, by id, as a FeatureCollection."""
        return GeofenceCollection(features=await list_geofences(pool))

    @get("/{fence_id:int}", summary="A geofence")
    async def details(self, pool: NamedDependency[Pool], fence_id: FromPath[int]) -> Geofence:
        """The fence; 404 when there is none or it was removed."""
        fence = await read_geofence(pool, fence_id)
        if fence is None:
            raise not_found(f"no geofence {fence_id}")
        return fence

    @post("/", summary="Add a geofence", status_code=HTTP_201_CREATED, opt=OPERATOR)
    async def add(
        self, request: Request[Any, Any, Any], pool: NamedDependency[Pool], data: JSONBody[dict[str, Any]]
    ) -> Geofence:
        """Add a fence: a Feature with a Polygon, MultiPolygon, or Point and `radius_m` (a circle), and a
        `name` property (`group`: only that group's devices). 400 with the reason when it is not a valid
        fence (an unclosed or self-intersecting ring, more than 10,000 vertices, a radius not positive…)."""
        return await add_geofence(pool, await _valid(pool, data), principal_of(request).name)

    @put("/{fence_id:int}", summary="Replace a geofence", opt=OPERATOR)
    async def replace(
        self, pool: NamedDependency[Pool], fence_id: FromPath[int], data: JSONBody[dict[str, Any]]
    ) -> Geofence:
        """Replace the fence's shape, name and group (validated as for adding); 404 when there is none."""
        fence = await replace_geofence(pool, fence_id, await _valid(pool, data))
        if fence is None:
            raise not_found(f"no geofence {fence_id}")
        return fence

    @delete(
        "/{fence_id:int}",
        summary="Remove a geofence",
        status_code=HTTP_204_NO_CONTENT,
        opt=OPERATOR,
        raises=[ConflictException],
    )
    async def remove(self, pool: NamedDependency[Pool], fence_id: FromPath[int]) -> None:
        """Remove the fence; its events stay. 404 when there is none, 409 while alert rules name it."""
        try:
            removed = await remove_geofence(pool, fence_id)
        except FenceInUseError as exc:
            raise conflict(str(exc)) from None
        if not removed:
            raise not_found(f"no geofence {fence_id}")

    @get("/{fence_id:int}/time-inside", summary="Time inside a geofence, per device")
    async def time_inside(
        self,
        request: Request[Any, Any, Any],
        pool: NamedDependency[Pool],
        fence_id: FromPath[int],
        since: Since = None,
        until: Until = None,
    ) -> TimeInside:
        """Per device, seconds inside the fence during [since, until), from its enter and exit events; a
        stay still open counts up to the device's last evaluated position."""
        start, end = _window(since, until)
        if await read_geofence(pool, fence_id) is None:
            raise not_found(f"no geofence {fence_id}")
        return await time_inside(pool, fence_id, start, end, principal_of(request).group)


@get("/devices/{device_id:str}/geofence-events", tags=["devices", "geofences"], summary="A device's geofence events")
async def device_geofence_events(
    *,
    request: Request[Any, Any, Any],
    pool: NamedDependency[Pool],
    device_id: FromPath[str],
    since: Since = None,
    until: Until = None,
    limit: Annotated[int, QueryParameter(ge=1, le=EVENTS_PAGE_MAX, description="rows per page")] = EVENTS_PAGE_DEFAULT,
    cursor: Annotated[int | None, QueryParameter(description="`next_cursor` of the previous page")] = None,
) -> GeofenceEventPage:
    """The device's enter and exit events with `since <= ts < until` (device time), oldest first."""
    if not is_device_id(device_id):
        raise bad_request(f"device id {device_id!r} does not match {DEVICE_ID_PATTERN}")
    start, end = _window(since, until)
    if not await may_see_device(principal_of(request), pool, device_id):
        raise not_found(f"no device {device_id!r}")
    return await device_events(pool, device_id, start, end, cursor=cursor, limit=limit)
