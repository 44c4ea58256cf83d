"""HTTP endpoint of a device's events."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from api.auth import may_see_device, principal_of
from api.events.query import LIMIT_DEFAULT, LIMIT_MAX, NAME_PATTERN, parse_events_query
from api.events.schemas import EventPage
from api.events.services import fetch_events
from api.pool import Pool
from api.problems import bad_request, not_found
from api.telemetry.query import BadParam


@get("/devices/{device_id:str}/events", tags=["devices"], summary="A device's events, newest first")
async def device_events(
    *,
    request: Request[Any, Any, Any],
    pool: NamedDependency[Pool],
    device_id: FromPath[str],
    since: Annotated[
        str | None, QueryParameter(description="ISO-8601 with time zone: only events with device time at or after it")
    ] = None,
    until: Annotated[
        str | None, QueryParameter(description="ISO-8601 with time zone: only events with device time before it")
    ] = None,
    name: Annotated[str | None, QueryParameter(pattern=NAME_PATTERN, description="only events of this name")] = None,
    limit: Annotated[int, QueryParameter(ge=1, le=LIMIT_MAX, description="events per page")] = LIMIT_DEFAULT,
    cursor: Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page")] = None,
) -> EventPage:
    """The events the device sent (`fleet/v1/{id}/events`), each stored once, newest first by device time.

    An unknown device has no events, except for a group-limited API key: a device outside its group, or
    unknown, is a 404.
    """
    query = parse_events_query(device_id, since=since, until=until, name=name, limit=limit, cursor=cursor)
    if isinstance(query, BadParam):
        raise bad_request(query.reason)
    if not await may_see_device(principal_of(request), pool, device_id):
        raise not_found(f"no device {device_id!r}")
    return await fetch_events(pool, query)
