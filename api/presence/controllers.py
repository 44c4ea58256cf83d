"""HTTP endpoint of a device's presence timeline."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Final

from litestar import Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from api.auth import may_see_device, principal_of
from api.pool import Pool
from api.presence.schemas import PresenceTimeline
from api.presence.services import read_timeline
from api.problems import bad_request, not_found
from api.telemetry.query import BadParam, parse_timestamp
from models.telemetry import utcnow
from models.topics import DEVICE_ID_PATTERN, is_device_id

DEFAULT_WINDOW: Final = timedelta(hours=24)


@get("/devices/{device_id:str}/presence", tags=["devices"], summary="A device's presence over time")
async def presence_timeline(
    *,
    request: Request[Any, Any, Any],
    pool: NamedDependency[Pool],
    device_id: FromPath[str],
    start: Annotated[
        str | None,
        QueryParameter(name="from", description="ISO-8601 with time zone; default: 24 hours before `to`"),
    ] = None,
    end: Annotated[str | None, QueryParameter(name="to", description="ISO-8601 with time zone; default: now")] = None,
) -> PresenceTimeline:
    """Online and offline intervals of the device within `from <= t < to` (a window ending in the future
    ends now), from every recorded change of its presence, each with what decided it."""
    if not is_device_id(device_id):
        raise bad_request(f"device id {device_id!r} does not match {DEVICE_ID_PATTERN}")
    now = utcnow()
    until = parse_timestamp("to", end) if end is not None else now
    if isinstance(until, BadParam):
        raise bad_request(until.reason)
    since = parse_timestamp("from", start) if start is not None else until - DEFAULT_WINDOW
    if isinstance(since, BadParam):
        raise bad_request(since.reason)
    until = min(until, now)
    if since >= until:
        raise bad_request("`from` must be before `to` and before now")
    if not await may_see_device(principal_of(request), pool, device_id):
        raise not_found(f"no device {device_id!r}")
    return await read_timeline(pool, device_id, since, until)
