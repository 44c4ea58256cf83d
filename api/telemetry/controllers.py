"""HTTP endpoints of telemetry history: raw pages, buckets, downsampled series, seq gaps, track exports."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final

from litestar import Controller, Request, get
from litestar.di import NamedDependency
from litestar.openapi.spec import OpenAPIFormat, OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Schema
from litestar.params import FromPath, QueryParameter
from litestar.response import Stream
from psycopg_pool import PoolTimeout

from api.auth import may_see_device, principal_of
from api.backends import ExportLimits
from api.pool import Pool
from api.problems import bad_request, not_found, unavailable
from api.telemetry.query import (
    LIMIT_DEFAULT,
    LIMIT_MAX,
    POINTS_MAX,
    POINTS_MIN,
    SELECTABLE,
    TRACK_FORMATS,
    BadParam,
    BucketQuery,
    PointsQuery,
    parse_history,
    parse_query,
    parse_track,
)
from api.telemetry.schemas import BucketedHistory, DownsampledHistory, GapReport, TelemetryPage
from api.telemetry.services import fetch_buckets, fetch_gaps, fetch_page, fetch_points
from api.telemetry.track import MEDIA_TYPES, content_disposition, started, stream_track
from models.telemetry import utcnow

EXPORT_RETRY_AFTER_S: Final = 5

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

    @get("/", summary="Telemetry history of one device: raw pages, time buckets or a downsampled series")
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
        limit: Annotated[
            int | None,
            QueryParameter(ge=1, le=LIMIT_MAX, description=f"rows per page (raw mode; default {LIMIT_DEFAULT})"),
        ] = None,
        cursor: Annotated[str | None, QueryParameter(description="`next_cursor` of the previous page")] = None,
        bucket: Annotated[
            str | None,
            QueryParameter(
                description="time buckets of this width instead of samples: a whole number and s, m, h or d"
                " (1s, 10s, 30s, 1m, 5m, 15m, 1h, 6h, 1d …), at most 31d"
            ),
        ] = None,
        points: Annotated[
            int | None,
            QueryParameter(
                description=f"at most this many values per metric, chosen by LTTB ({POINTS_MIN} … {POINTS_MAX})"
            ),
        ] = None,
    ) -> TelemetryPage | BucketedHistory | DownsampledHistory:
        """Samples with `from <= ts < to`: in (ts, boot, seq) order a page at a time, or in time buckets
        (`bucket=`), or downsampled for a chart (`points=`).

        An unknown device has an empty history, except for a group-limited API key: a device outside its
        group, or unknown, is a 404.
        """
        query = parse_history(
            device_id,
            start=start,
            end=end,
            metric=metric,
            limit=limit,
            cursor=cursor,
            bucket=bucket,
            points=points,
            now=utcnow(),
        )
        if isinstance(query, BadParam):
            raise bad_request(query.reason)
        if not await may_see_device(principal_of(request), pool, device_id):
            raise not_found(f"no device {device_id!r}")
        if isinstance(query, BucketQuery):
            return await fetch_buckets(pool, query)
        if isinstance(query, PointsQuery):
            series = await fetch_points(pool, query)
            if isinstance(series, BadParam):
                raise bad_request(series.reason)
            return series
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
        """The seq ranges missing between the samples stored with `from <= ts < to`, per boot, and where a
        boot's seq went back (a reset: the runs on either side count their gaps apart)."""
        query = parse_query(device_id, start=start, end=end, metric=None, limit=1, cursor=None, now=utcnow())
        if isinstance(query, BadParam):
            raise bad_request(query.reason)
        if not await may_see_device(principal_of(request), pool, device_id):
            raise not_found(f"no device {device_id!r}")
        return await fetch_gaps(pool, query)


@dataclass
class TrackOperation(Operation):
    """The track export documents its answer by hand: one file in the media type `format=` picks."""

    def __post_init__(self) -> None:
        file = Schema(type=OpenAPIType.STRING, format=OpenAPIFormat.BINARY)
        feature = Schema(
            type=OpenAPIType.OBJECT,
            description="an RFC 7946 Feature: a LineString of the fixes, the device and window in properties",
            required=["type", "geometry", "properties"],
            properties={
                "type": Schema(const="Feature"),
                "geometry": Schema(type=[OpenAPIType.OBJECT, OpenAPIType.NULL], description="null: no fixes"),
            },
        )
        self.responses = {
            "200": OpenAPIResponse(
                description="The track as a download (Content-Disposition: attachment), streamed",
                content={
                    media: OpenAPIMediaType(schema=feature if file_format == "geojson" else file)
                    for file_format, media in MEDIA_TYPES.items()
                },
            )
        }


class TrackController(Controller):
    """`/devices/{device_id}/track`: a device's positions and metrics as a file."""

    path = "/devices/{device_id:str}/track"
    tags = ("telemetry",)

    @get("/", summary="Track export of one device: GeoJSON, GPX or CSV", operation_class=TrackOperation)
    async def track(
        self,
        *,
        request: Request[Any, Any, Any],
        pool: NamedDependency[Pool],
        export_pool: NamedDependency[Pool],
        export_limits: NamedDependency[ExportLimits],
        device_id: FromPath[str],
        start: WindowStart = None,
        end: WindowEnd = None,
        file_format: Annotated[
            str, QueryParameter(name="format", description=f"one of {', '.join(TRACK_FORMATS)}")
        ] = "geojson",
    ) -> Stream:
        """The samples of `from <= ts < to` (at most 31 days: `TRACK_WINDOW_MAX`) as a download, streamed.

        Read through the export pool: 503 with `Retry-After` when none of its connections is free in time.
        """
        query = parse_track(device_id, start=start, end=end, file_format=file_format, now=utcnow())
        if isinstance(query, BadParam):
            raise bad_request(query.reason)
        if not await may_see_device(principal_of(request), pool, device_id):
            raise not_found(f"no device {device_id!r}")
        try:
            chunks = await started(stream_track(export_pool, query, export_limits))
        except PoolTimeout:
            raise unavailable(
                f"no export connection free within {export_limits.wait_s:g} s: other exports are running,"
                " or the database is away; try again shortly",
                EXPORT_RETRY_AFTER_S,
            ) from None
        return Stream(
            chunks,
            media_type=MEDIA_TYPES[query.file_format],
            headers={"Content-Disposition": content_disposition(query)},
        )
