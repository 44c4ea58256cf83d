"""HTTP endpoint of telemetry history."""

from __future__ import annotations

from typing import Annotated, Any

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.params import FromPath, QueryParameter

from api.auth import may_see_device, principal_of
from api.backends import Pool
from api.problems import bad_request, not_found
from api.telemetry.query import LIMIT_DEFAULT, LIMIT_MAX, SELECTABLE, BadParam, parse_query
from api.telemetry.schemas import GapReport, TelemetryPage
from api.telemetry.services import fetch_gaps, fetch_page
from models.telemetry import utcnow

# The history window, `from <= ts < to`, as both routes take it.
WindowStart = Annotated[
    str | None,
    QueryParameter(name="from", description="ISO-8601 with time zone, inclusive; default: one hour before `to`"),
]
WindowEnd = Annotated[
    str | None, QueryParameter(name="to", description="ISO-8601 with time zone, exclusive; default: now")
]


class TelemetryController(Controller):
    """`/devices/{device_id}/telemetry`: raw samples as stored, oldest first."""

    path = "/devices/{device_id:str}/telemetry"
    tags = ("telemetry",)

    @get("/", summary="Raw telemetry history of one device")
    async def history(
        self,
        *,
        request: Request[Any, Any, Any],
        pool: NamedDependency[Pool],
        device_id: FromPath[str],
        start: WindowStart = None,
        end: WindowEnd = None,
        metric: Annotated[
            str | None,
            QueryParameter(
                description=f"only samples carrying this value, and only it: one of {', '.join(SELECTABLE)}"
            ),
        ] = None,
        limit: Annotated[int, QueryParameter(ge=1, le=LIMIT_MAX, description="rows per page")] = LIMIT_DEFAULT,
        cursor: Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page")] = None,
    ) -> TelemetryPage:
        """Samples with `from <= ts < to` in (ts, seq) order, a page at a time.

        An unknown device has an empty history, except for a group-limited API key: a device outside its
        group, or unknown, is a 404.
        """
        query = parse_query(device_id, start=start, end=end, metric=metric, limit=limit, cursor=cursor, now=utcnow())
        if isinstance(query, BadParam):
            raise bad_request(query.reason)
        if not await may_see_device(principal_of(request), pool, device_id):
            raise not_found(f"no device {device_id!r}")
        return await fetch_page(pool, query)

    @get("/gaps", summary="Missing samples of one device, from its seq numbers")
    async def gaps(
        self,
        *,
        request: Request[Any, Any, Any],
        pool: NamedDependency[Pool],
        device_id: FromPath[str],
        start: WindowStart = None,
        end: WindowEnd = None,
    ) -> GapReport:
        """The seq ranges missing between the samples stored with `from <= ts < to`, per boot."""
        query = parse_query(device_id, start=start, end=end, metric=None, limit=1, cursor=None, now=utcnow())
        if isinstance(query, BadParam):
            raise bad_request(query.reason)
        if not await may_see_device(principal_of(request), pool, device_id):
            raise not_found(f"no device {device_id!r}")
        return await fetch_gaps(pool, query)
