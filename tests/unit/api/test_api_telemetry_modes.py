"""Validation of the history modes: bucket widths, window alignment, rollup choice, points, track."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.telemetry.query import (
    BadParam,
    BucketQuery,
    PointsQuery,
    TelemetryQuery,
    TrackQuery,
    bucket_source,
    parse_bucket,
    parse_history,
    parse_track,
)
from models.rollups import BUCKET_ORIGIN, ROLLUP_1H, ROLLUP_1M

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def history(**params: object) -> object:
    values: dict[str, object] = {
        "start": None,
        "end": None,
        "metric": None,
        "limit": None,
        "cursor": None,
        "bucket": None,
        "points": None,
    } | params
    return parse_history("truck-1", now=NOW, **values)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("text", "width"),
    [
        ("1s", timedelta(seconds=1)),
        ("10s", timedelta(seconds=10)),
        ("30s", timedelta(seconds=30)),
        ("1m", timedelta(minutes=1)),
        ("15m", timedelta(minutes=15)),
        ("6h", timedelta(hours=6)),
        ("1d", timedelta(days=1)),
        ("31d", timedelta(days=31)),
        (" 90m ", timedelta(minutes=90)),
    ],
)
def test_bucket_grammar_reads_a_number_and_a_unit(text: str, width: timedelta) -> None:
    assert parse_bucket(text) == width


@pytest.mark.parametrize("text", ["", "m", "0s", "01m", "1.5h", "-1h", "1w", "1 m", "1M", "5min", "1h30m", "32d"])
def test_bucket_grammar_refuses_anything_else(text: str) -> None:
    assert isinstance(parse_bucket(text), BadParam)


@pytest.mark.parametrize(
    ("width", "source"),
    [
        (timedelta(seconds=10), None),
        (timedelta(seconds=90), None),
        (timedelta(minutes=1), ROLLUP_1M),
        (timedelta(minutes=5), ROLLUP_1M),
        (timedelta(minutes=90), ROLLUP_1M),
        (timedelta(hours=1), ROLLUP_1H),
        (timedelta(days=1), ROLLUP_1H),
    ],
)
def test_buckets_come_from_the_coarsest_rollup_that_tiles_them(width: timedelta, source: object) -> None:
    assert bucket_source(width) == source


@given(
    st.datetimes(min_value=datetime(2020, 1, 1), max_value=datetime(2030, 1, 1), timezones=st.just(UTC)),
    st.integers(min_value=0, max_value=3 * 86400),
    st.sampled_from(["1s", "10s", "45s", "1m", "5m", "1h", "6h", "1d"]),
)
def test_bucket_window_is_widened_to_whole_aligned_buckets(start: datetime, span_s: int, bucket: str) -> None:
    end = start + timedelta(seconds=span_s)
    query = history(start=start.isoformat(), end=end.isoformat(), bucket=bucket)
    if isinstance(query, BadParam):
        assert "buckets" in query.reason  # only too many buckets may be refused
        return
    assert isinstance(query, BucketQuery)
    width = query.width
    assert query.start <= start < query.start + width or start == end == query.start
    assert query.end - width < end <= query.end
    assert (query.start - BUCKET_ORIGIN) % width == timedelta(0)
    assert (query.end - BUCKET_ORIGIN) % width == timedelta(0)


def test_modes_exclude_each_other_and_raw_parameters() -> None:
    assert isinstance(history(), TelemetryQuery)
    assert isinstance(history(bucket="5m"), BucketQuery)
    assert isinstance(history(points=100), PointsQuery)
    for params in ({"bucket": "5m", "points": 10}, {"bucket": "5m", "cursor": "x"}, {"points": 10, "limit": 10}):
        assert isinstance(history(**params), BadParam), params


def test_too_many_buckets_are_refused_with_the_count() -> None:
    refused = history(start="2026-11-20T00:00:00Z", end="2026-11-25T00:00:00Z", bucket="10s")

    assert isinstance(refused, BadParam)
    assert "43200 buckets" in refused.reason


def test_points_must_be_in_range_and_numeric() -> None:
    assert isinstance(history(points=2), PointsQuery)
    assert isinstance(history(points=10_000), PointsQuery)
    assert isinstance(history(points=1), BadParam)
    assert isinstance(history(points=10_001), BadParam)
    assert isinstance(history(points=10, metric="position"), BadParam)


def test_track_needs_a_known_format_and_at_most_31_days() -> None:
    ok = parse_track("truck-1", start="2026-10-25T12:00:00Z", end=None, file_format="gpx", now=NOW)
    too_long = parse_track("truck-1", start="2026-10-25T11:59:59Z", end=None, file_format="gpx", now=NOW)

    assert isinstance(ok, TrackQuery)
    assert isinstance(too_long, BadParam)
    assert isinstance(parse_track("truck-1", start=None, end=None, file_format="kml", now=NOW), BadParam)
    assert isinstance(parse_track("bad id", start=None, end=None, file_format="csv", now=NOW), BadParam)
