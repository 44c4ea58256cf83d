"""What a telemetry history request asks for, validated: parameters in, a query or the reason out.

One history route serves three modes, chosen by parameters: raw pages (`cursor`, `limit`), time buckets
(`bucket=`) and a downsampled series for charts (`points=`). The modes exclude each other, and a
parameter of another mode is refused rather than ignored, so a client never silently gets another shape
than it asked for. Every mode is bounded: a page by `limit`, buckets by `BUCKETS_MAX` per request,
downsampling by the raw samples it may read, a track export by its window.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from api.telemetry.cursor import FormerCursor, TelemetryCursor, decode_cursor
from models.rollups import BUCKET_ORIGIN, ROLLUPS, Rollup
from models.telemetry import METRIC_COLUMNS
from models.topics import DEVICE_ID_PATTERN, is_device_id

POSITION: Final = "position"
SELECTABLE: Final = (*METRIC_COLUMNS, POSITION)
DEFAULT_WINDOW: Final = timedelta(hours=1)
LIMIT_DEFAULT: Final = 1000
LIMIT_MAX: Final = 10_000

BUCKETS_MAX: Final = 10_000
BUCKET_MAX: Final = timedelta(days=31)
POINTS_MIN: Final = 2
POINTS_MAX: Final = 10_000
# Downsampling reads raw samples: more than this in the window is refused (use buckets for long windows).
POINTS_SOURCE_MAX: Final = 200_000
TRACK_WINDOW_MAX: Final = timedelta(days=31)
TRACK_FORMATS: Final = ("geojson", "gpx", "csv")
_BUCKET_UNITS: Final = {
    "s": timedelta(seconds=1),
    "m": timedelta(minutes=1),
    "h": timedelta(hours=1),
    "d": timedelta(days=1),
}
_BUCKET_GRAMMAR: Final = re.compile(r"([1-9][0-9]{0,6})([smhd])")

# A `+` in a query string decodes to a space: "…T10:00:00 01:00" meant "+01:00".
_SPACE_FOR_PLUS: Final = re.compile(r" (\d{2}(?::?\d{2})?)$")


@dataclass(frozen=True, slots=True)
class TelemetryQuery:
    """Rows of `device_id` with `start <= ts < end`, after `after`, at most `limit`, of `metric` only."""

    device_id: str
    start: datetime
    end: datetime
    metric: str | None
    limit: int
    after: TelemetryCursor | None


@dataclass(frozen=True, slots=True)
class BadParam:
    """A request parameter that cannot be served, and what it should look like."""

    reason: str


def parse_timestamp(name: str, text: str) -> datetime | BadParam:
    """An ISO-8601 timestamp with a time zone (`Z` or an offset)."""
    candidate = _SPACE_FOR_PLUS.sub(r"+\1", text.strip())
    try:
        value = datetime.fromisoformat(candidate)
    except ValueError:
        return BadParam(f"{name}={text!r} is not an ISO-8601 timestamp, e.g. 2026-11-25T10:00:00Z")
    if value.tzinfo is None:
        return BadParam(f"{name}={text!r} has no time zone; add Z or an offset such as %2B01:00")
    return value


@dataclass(frozen=True, slots=True)
class BucketQuery:
    """Buckets of `width` with `start <= bucket start < end` (both aligned to the width), from `source`.

    `source` is the coarsest rollup whose width divides `width`, or None for raw rows. `metric` limits the
    answer to one metric or the position.
    """

    device_id: str
    start: datetime
    end: datetime
    width: timedelta
    label: str
    metric: str | None
    source: Rollup | None


@dataclass(frozen=True, slots=True)
class PointsQuery:
    """At most `points` samples per metric series of `start <= ts < end`, chosen by LTTB."""

    device_id: str
    start: datetime
    end: datetime
    metric: str | None
    points: int


@dataclass(frozen=True, slots=True)
class TrackQuery:
    """The samples of `start <= ts < end` as a track file in `file_format`."""

    device_id: str
    start: datetime
    end: datetime
    file_format: str


def parse_window(start: str | None, end: str | None, now: datetime) -> tuple[datetime, datetime] | BadParam:
    """`from` and `to`; a missing `to` is now, a missing `from` an hour before `to`."""
    end_at = now if end is None else parse_timestamp("to", end)
    if isinstance(end_at, BadParam):
        return end_at
    start_at = end_at - DEFAULT_WINDOW if start is None else parse_timestamp("from", start)
    if isinstance(start_at, BadParam):
        return start_at
    if start_at > end_at:
        return BadParam(f"from ({start_at.isoformat()}) is after to ({end_at.isoformat()})")
    return start_at, end_at


def parse_bucket(text: str) -> timedelta | BadParam:
    """A bucket width: a whole number and a unit, `s`, `m`, `h` or `d` (30s, 5m, 6h, 1d), 1 s to 31 d."""
    match = _BUCKET_GRAMMAR.fullmatch(text.strip())
    if match is None:
        return BadParam(
            f"bucket={text!r} is not a duration; write a whole number and a unit s, m, h or d, e.g. 10s, 5m, 1h, 1d"
        )
    width = int(match[1]) * _BUCKET_UNITS[match[2]]
    if width > BUCKET_MAX:
        return BadParam(f"bucket={text!r} is longer than {BUCKET_MAX.days} days")
    return width


def _align_down(at: datetime, width: timedelta) -> datetime:
    return BUCKET_ORIGIN + ((at - BUCKET_ORIGIN) // width) * width


def bucket_source(width: timedelta) -> Rollup | None:
    """The coarsest rollup whose buckets tile `width` exactly; None when only raw rows can (sub-minute)."""
    for rollup in reversed(ROLLUPS):
        if width % rollup.width == timedelta(0):
            return rollup
    return None


def parse_history(
    device_id: str,
    *,
    start: str | None,
    end: str | None,
    metric: str | None,
    limit: int | None,
    cursor: str | None,
    bucket: str | None,
    points: int | None,
    now: datetime,
) -> TelemetryQuery | BucketQuery | PointsQuery | BadParam:
    """Validate a history request of any mode (raw, bucketed, downsampled)."""
    if bucket is None and points is None:
        return parse_query(
            device_id,
            start=start,
            end=end,
            metric=metric,
            limit=LIMIT_DEFAULT if limit is None else limit,
            cursor=cursor,
            now=now,
        )
    mode = "bucket" if bucket is not None else "points"
    if bucket is not None and points is not None:
        return BadParam("bucket and points exclude each other: pass one")
    for name, value in (("cursor", cursor), ("limit", limit)):
        if value is not None:
            return BadParam(f"{name} applies to raw pages only, not with {mode}=")
    base = parse_query(device_id, start=start, end=end, metric=metric, limit=1, cursor=None, now=now)
    if isinstance(base, BadParam):
        return base
    if bucket is not None:
        width = parse_bucket(bucket)
        if isinstance(width, BadParam):
            return width
        first = _align_down(base.start, width)
        last = _align_down(base.end, width)
        # Whole buckets: widened down to the bucket holding `from`, up to the end of the one holding `to`.
        after = last if last == base.end else last + width
        count = (after - first) // width
        if count > BUCKETS_MAX:
            return BadParam(
                f"{count} buckets of {bucket} in this window; at most {BUCKETS_MAX}: take a wider bucket or a shorter window"
            )
        return BucketQuery(device_id, first, after, width, bucket.strip(), base.metric, bucket_source(width))
    assert points is not None
    if not POINTS_MIN <= points <= POINTS_MAX:
        return BadParam(f"points={points} is out of range; {POINTS_MIN} … {POINTS_MAX}")
    if base.metric == POSITION:
        return BadParam("points downsamples numeric metrics; for positions use the track export")
    return PointsQuery(device_id, base.start, base.end, base.metric, points)


def parse_track(
    device_id: str, *, start: str | None, end: str | None, file_format: str, now: datetime
) -> TrackQuery | BadParam:
    """Validate a track export request: a known format and a window of at most `TRACK_WINDOW_MAX`."""
    if not is_device_id(device_id):
        return BadParam(f"device id {device_id!r} does not match {DEVICE_ID_PATTERN}")
    if file_format not in TRACK_FORMATS:
        return BadParam(f"unknown format {file_format!r}; expected one of: {', '.join(TRACK_FORMATS)}")
    window = parse_window(start, end, now)
    if isinstance(window, BadParam):
        return window
    if window[1] - window[0] > TRACK_WINDOW_MAX:
        return BadParam(f"the window is longer than {TRACK_WINDOW_MAX.days} days; export it in parts")
    return TrackQuery(device_id, window[0], window[1], file_format)


def parse_query(
    device_id: str,
    *,
    start: str | None,
    end: str | None,
    metric: str | None,
    limit: int,
    cursor: str | None,
    now: datetime,
) -> TelemetryQuery | BadParam:
    """Validate a history request; a missing window is the hour before `to` (default: now)."""
    if not is_device_id(device_id):
        return BadParam(f"device id {device_id!r} does not match {DEVICE_ID_PATTERN}")
    window = parse_window(start, end, now)
    if isinstance(window, BadParam):
        return window
    start_at, end_at = window
    if metric is not None and metric not in SELECTABLE:
        return BadParam(f"unknown metric {metric!r}; expected one of: {', '.join(SELECTABLE)}")
    after = None
    if cursor is not None:
        decoded = decode_cursor(cursor)
        if decoded is None:
            return BadParam("cursor is not valid; pass next_cursor of the previous page unchanged")
        if isinstance(decoded, FormerCursor):
            return BadParam(
                "cursor is from before pages were ordered by (ts, boot, seq) and cannot be resumed exactly;"
                f" start again without cursor, with from={decoded.ts.isoformat()} (rows of that instant may repeat)"
            )
        after = decoded
    return TelemetryQuery(device_id, start_at, end_at, metric, limit, after)
