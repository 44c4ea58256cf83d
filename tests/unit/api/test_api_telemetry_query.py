"""Validation of telemetry history parameters, the page cursor, and the statement built from them."""

from __future__ import annotations

import base64
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.telemetry.cursor import TelemetryCursor, decode_cursor, encode_cursor
from api.telemetry.query import BadParam, TelemetryQuery, parse_query, parse_timestamp
from api.telemetry.services import build_statement
from models.telemetry import KNOWN_METRICS, METRIC_COLUMNS

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def parse(**params: str | None) -> TelemetryQuery | BadParam:
    defaults: dict[str, str | None] = {"start": None, "end": None, "metric": None, "cursor": None}
    values = defaults | params
    return parse_query(
        "truck-1",
        start=values["start"],
        end=values["end"],
        metric=values["metric"],
        cursor=values["cursor"],
        limit=1000,
        now=NOW,
    )


def test_query_defaults_to_the_hour_before_now() -> None:
    query = parse()

    assert isinstance(query, TelemetryQuery)
    assert (query.start, query.end) == (NOW - timedelta(hours=1), NOW)
    assert query.metric is None
    assert query.after is None


def test_query_window_defaults_to_the_hour_before_to() -> None:
    query = parse(end="2026-11-20T08:00:00Z")

    assert isinstance(query, TelemetryQuery)
    assert query.start == datetime(2026, 11, 20, 7, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T10:00:00Z", datetime(2026, 11, 25, 10, 0, tzinfo=UTC)),
        ("2026-11-25T11:00:00+01:00", datetime(2026, 11, 25, 10, 0, tzinfo=UTC)),
        ("2026-11-25T11:00:00 01:00", datetime(2026, 11, 25, 10, 0, tzinfo=UTC)),
        ("2026-11-25T10:00:00.250-02:30", datetime(2026, 11, 25, 12, 30, 0, 250000, tzinfo=UTC)),
    ],
)
def test_timestamp_accepts_iso8601_with_a_zone(text: str, expected: datetime) -> None:
    assert parse_timestamp("from", text) == expected


@pytest.mark.parametrize(
    ("params", "expected"),
    [
        ({"start": "2026-11-25T10:00:00"}, "from='2026-11-25T10:00:00' has no time zone"),
        ({"end": "tomorrow"}, "to='tomorrow' is not an ISO-8601 timestamp"),
        ({"start": "2026-11-25T11:00:00Z", "end": "2026-11-25T10:00:00Z"}, "is after to"),
        ({"metric": "speed"}, "unknown metric 'speed'; expected one of: fuel, engine_temp"),
        ({"metric": 'fuel" --'}, "unknown metric"),
        ({"cursor": "%%%"}, "cursor is not valid"),
    ],
)
def test_query_rejects_bad_params_with_the_reason(params: dict[str, str], expected: str) -> None:
    result = parse(**params)

    assert isinstance(result, BadParam)
    assert expected in result.reason


def test_query_rejects_an_invalid_device_id() -> None:
    result = parse_query("a b", start=None, end=None, metric=None, cursor=None, limit=1, now=NOW)

    assert isinstance(result, BadParam)
    assert "device id" in result.reason


def test_metric_columns_are_the_known_metrics_of_the_schema() -> None:
    assert set(METRIC_COLUMNS) == set(KNOWN_METRICS)


def test_cursor_round_trips_exactly_to_the_microsecond() -> None:
    cursor = TelemetryCursor(datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC), 3, 42)

    text = encode_cursor(cursor)

    assert decode_cursor(text) == cursor
    assert text.isascii()
    assert "=" not in text


@given(
    ts=st.datetimes(
        min_value=datetime(1971, 1, 1),
        max_value=datetime(2200, 1, 1),
        timezones=st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30))]),
    ),
    boot=st.integers(min_value=0, max_value=2**31 - 1),
    seq=st.integers(min_value=0, max_value=2**63 - 1),
)
def test_cursor_round_trips_any_time_boot_and_seq(ts: datetime, boot: int, seq: int) -> None:
    assert decode_cursor(encode_cursor(TelemetryCursor(ts, boot, seq))) == TelemetryCursor(ts, boot, seq)


@pytest.mark.parametrize(
    "text",
    [
        "",
        "!!!",
        "bm90LWEtY3Vyc29y",
        "MjoxOjE",
        "MToxOi0x",
        "MTox",
        "MTo5OTk5OTk5OTk5OTk5OTk5OTk5OjE",
        "MjoxOi0xOjE",  # 2:1:-1:1
        "MzoxOjE6MQ",  # 3:1:1:1
    ],
)
def test_cursor_decode_refuses_what_it_did_not_encode(text: str) -> None:
    assert decode_cursor(text) is None


def test_statement_quotes_the_whitelisted_column_and_keeps_values_as_params() -> None:
    query = parse(metric="engine_temp", cursor=encode_cursor(TelemetryCursor(NOW, 2, 3)))
    assert isinstance(query, TelemetryQuery)

    statement, params = build_statement(query)
    text = statement.as_string()

    assert '"engine_temp" IS NOT NULL' in text
    assert "(ts, boot, seq) > (%(after_ts)s, %(after_boot)s, %(after_seq)s)" in text
    assert "ORDER BY ts, boot, seq" in text
    assert "truck-1" not in text
    assert params["device_id"] == "truck-1"
    assert params["limit"] == 1001
    assert (params["after_ts"], params["after_boot"], params["after_seq"]) == (NOW, 2, 3)


def test_a_cursor_of_the_former_ts_seq_order_is_refused_with_where_to_start_again() -> None:
    at = datetime(2026, 11, 25, 10, 0, 0, 123456, tzinfo=UTC)
    micros = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
    former = base64.urlsafe_b64encode(f"1:{micros}:42".encode()).rstrip(b"=").decode()

    result = parse(cursor=former)

    assert isinstance(result, BadParam)
    assert "(ts, boot, seq)" in result.reason
    assert f"from={at.isoformat()}" in result.reason
