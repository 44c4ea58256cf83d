"""HTTP endpoints of trips, stops and idling (stored by the engine), and of daily summaries per device and
per group. Every role reads them; a group-limited API key sees its group's devices only."""

from __future__ import annotations

from datetime import date, datetime
from typing import Annotated, Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from api.auth import principal_of
from api.pool import Pool
from api.problems import bad_request, not_found
from api.trips.schemas import IdlePage, StopPage, TripPage
from api.trips.services import PAGE_DEFAULT, PAGE_MAX, Kind, device_day, device_visible, group_day, list_items
from models.topics import DEVICE_ID_PATTERN, is_device_id
from models.trip_summary import DailySummary

Since = Annotated[datetime | None, QueryParameter(description="started at or after (device time)")]
Until = Annotated[datetime | None, QueryParameter(description="started before (device time)")]
Limit = Annotated[int, QueryParameter(ge=1, le=PAGE_MAX, description="items per page")]
Cursor = Annotated[datetime | None, QueryParameter(description="`next_cursor` of the previous page")]
Day = Annotated[date, QueryParameter(description="the day, YYYY-MM-DD (UTC)")]


async def _page(
    request: Request[Any, Any, Any],
    pool: Pool,
    kind: Kind,
    device_id: str,
    *,
    window: tuple[datetime | None, datetime | None, datetime | None],
    limit: int,
) -> tuple[list[Any], datetime | None]:
    since, until, cursor = window
    await _visible_device(request, pool, device_id)
    for name, value in (("since", since), ("until", until), ("cursor", cursor)):
        if value is not None and value.tzinfo is None:
            raise bad_request(f"`{name}` needs a time zone (e.g. 2026-03-02T07:00:00Z)")
    return await list_items(pool, kind, device_id, since=since, until=until, cursor=cursor, limit=limit)


async def _visible_device(request: Request[Any, Any, Any], pool: Pool, device_id: str) -> None:
    if not is_device_id(device_id):
        raise bad_request(f"device id {device_id!r} does not match {DEVICE_ID_PATTERN}")
    if not await device_visible(pool, device_id, principal_of(request).group):
        raise not_found(f"no device {device_id!r}")


@get("/devices/{device_id:str}/trips", tags=["trips"], summary="A device's trips")
async def device_trips(
    *,
    request: Request[Any, Any, Any],
    pool: NamedDependency[Pool],
    device_id: FromPath[str],
    since: Since = None,
    until: Until = None,
    limit: Limit = PAGE_DEFAULT,
    cursor: Cursor = None,
) -> TripPage:
    """Trips in start order (`complete` false for one still under way)."""
    items, next_cursor = await _page(request, pool, "trips", device_id, window=(since, until, cursor), limit=limit)
    return TripPage(items=items, next_cursor=next_cursor)


@get("/devices/{device_id:str}/stops", tags=["trips"], summary="A device's stops")
async def device_stops(
    *,
    request: Request[Any, Any, Any],
    pool: NamedDependency[Pool],
    device_id: FromPath[str],
    since: Since = None,
    until: Until = None,
    limit: Limit = PAGE_DEFAULT,
    cursor: Cursor = None,
) -> StopPage:
    """Stops in start order (`complete` false for the last one, which lasts beyond the data)."""
    items, next_cursor = await _page(request, pool, "stops", device_id, window=(since, until, cursor), limit=limit)
    return StopPage(items=items, next_cursor=next_cursor)


@get("/devices/{device_id:str}/idling", tags=["trips"], summary="A device's idle intervals")
async def device_idling(
    *,
    request: Request[Any, Any, Any],
    pool: NamedDependency[Pool],
    device_id: FromPath[str],
    since: Since = None,
    until: Until = None,
    limit: Limit = PAGE_DEFAULT,
    cursor: Cursor = None,
) -> IdlePage:
    """Intervals with the ignition on and the device not moving, in start order."""
    items, next_cursor = await _page(
        request, pool, "idle_periods", device_id, window=(since, until, cursor), limit=limit
    )
    return IdlePage(items=items, next_cursor=next_cursor)


@get("/devices/{device_id:str}/summary", tags=["trips"], summary="A device's day")
async def device_summary(
    *, request: Request[Any, Any, Any], pool: NamedDependency[Pool], device_id: FromPath[str], day: Day
) -> DailySummary:
    """Trips started that day, distance, driving, stopped and idle seconds, highest speed and fuel used,
    clipped to the day (UTC)."""
    await _visible_device(request, pool, device_id)
    return await device_day(pool, device_id, day)


@get("/groups/{name:str}/summary", tags=["trips"], summary="A group's day")
async def group_day_summary(
    *, request: Request[Any, Any, Any], pool: NamedDependency[Pool], name: FromPath[str], day: Day
) -> DailySummary:
    """The day (UTC) summed over the group's devices (the highest speed is the maximum)."""
    visible = principal_of(request).group
    summary = None if visible is not None and visible != name else await group_day(pool, name, day)
    if summary is None:
        raise not_found(f"no group {name!r}")
    return summary
