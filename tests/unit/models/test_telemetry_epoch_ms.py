"""Device time as firmware sends it: RFC 3339 text, or an integer of Unix epoch milliseconds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from models.telemetry import DecodedTelemetry, Limits, MessageRejection, decode_telemetry

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
NOW_MS = 1_795_608_000_000  # NOW in Unix epoch milliseconds


def decode(payload: object) -> DecodedTelemetry | MessageRejection:
    return decode_telemetry(msgspec.json.encode(payload), content_type=None, now=NOW, limits=Limits())


def test_decode_accepts_ts_as_unix_epoch_milliseconds() -> None:
    assert datetime.fromtimestamp(NOW_MS / 1000, UTC) == NOW
    result = decode({"seq": 1, "ts": NOW_MS - 1500, "metrics": {"fuel": 50}})
    assert isinstance(result, DecodedTelemetry)
    (sample,) = result.samples
    assert sample.ts == NOW - timedelta(milliseconds=1500)
    assert sample.ts.tzinfo is not None


def test_decode_gives_the_same_sample_for_both_spellings_of_ts() -> None:
    as_text = decode({"seq": 1, "ts": NOW.isoformat()})
    as_ms = decode({"seq": 1, "ts": NOW_MS})
    assert isinstance(as_text, DecodedTelemetry)
    assert isinstance(as_ms, DecodedTelemetry)
    assert as_text.samples == as_ms.samples


def test_decode_refuses_integer_seconds_with_a_hint() -> None:
    result = decode({"samples": [{"seq": 1, "ts": NOW_MS // 1000}, {"seq": 2, "ts": NOW_MS}]})
    assert isinstance(result, DecodedTelemetry)
    assert [s.seq for s in result.samples] == [2]
    (refused,) = result.rejections
    assert refused.seq == 1
    assert "not Unix epoch milliseconds" in refused.reason
    assert "multiply by 1000" in refused.reason


def test_decode_applies_skew_and_retention_to_epoch_milliseconds() -> None:
    limits = Limits()
    future = NOW_MS + int((limits.future_skew + timedelta(seconds=1)).total_seconds() * 1000)
    old = NOW_MS - int((limits.max_age + timedelta(days=1)).total_seconds() * 1000)
    result = decode({"samples": [{"seq": 1, "ts": future}, {"seq": 2, "ts": old}]})
    assert isinstance(result, DecodedTelemetry)
    assert result.samples == []
    assert ["in the future" in r.reason for r in result.rejections] == [True, False]
    assert "older than the retention" in result.rejections[1].reason


def test_decode_refuses_fractional_and_out_of_range_epoch_values() -> None:
    result = decode({"samples": [{"seq": 1, "ts": NOW_MS + 0.5}, {"seq": 2, "ts": 10**16}, {"seq": 3, "ts": True}]})
    assert isinstance(result, DecodedTelemetry)
    assert result.samples == []
    assert [r.seq for r in result.rejections] == [1, 2, 3]
    assert "beyond year 9999" in result.rejections[1].reason


def test_decode_accepts_epoch_milliseconds_in_messagepack() -> None:
    payload = msgspec.msgpack.encode({"seq": 4, "ts": NOW_MS})
    result = decode_telemetry(payload, content_type="application/msgpack", now=NOW, limits=Limits())
    assert isinstance(result, DecodedTelemetry)
    assert result.samples[0].ts == NOW
