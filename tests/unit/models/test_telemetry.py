"""Validation of telemetry payloads: what is accepted, what is refused, and why."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from models.telemetry import (
    DecodedTelemetry,
    Limits,
    MessageRejection,
    Position,
    Sample,
    TelemetryBatch,
    decode_telemetry,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LIMITS = Limits()


def decode(payload: bytes, content_type: str | None = None) -> DecodedTelemetry | MessageRejection:
    return decode_telemetry(payload, content_type=content_type, now=NOW, limits=LIMITS)


def sample_json(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"seq": 1, "ts": NOW.isoformat()}
    base.update(fields)
    return base


def test_decode_accepts_a_single_sample_with_position_and_metrics() -> None:
    payload = msgspec.json.encode(sample_json(pos={"lat": 52.1, "lon": 4.3, "speed": 42.0}, metrics={"fuel": 55.5}))
    result = decode(payload)
    assert isinstance(result, DecodedTelemetry)
    assert result.rejections == []
    (sample,) = result.samples
    assert sample.pos == Position(lat=52.1, lon=4.3, speed=42.0)
    assert sample.metrics == {"fuel": 55.5}
    assert sample.readings == 2


def test_decode_ignores_unknown_fields_from_newer_firmware() -> None:
    payload = msgspec.json.encode(sample_json(firmware="9.9", pos={"lat": 1, "lon": 2, "hdop": 0.9}))
    result = decode(payload)
    assert isinstance(result, DecodedTelemetry)
    assert len(result.samples) == 1
    assert result.rejections == []


def test_decode_rejects_unparseable_message_whole() -> None:
    result = decode(b'{"seq": 1, "ts": ')
    assert isinstance(result, MessageRejection)
    assert "not valid JSON" in result.reason


def test_decode_rejects_oversize_payload_before_parsing() -> None:
    result = decode_telemetry(b"x" * 100, content_type=None, now=NOW, limits=Limits(max_payload_bytes=64))
    assert isinstance(result, MessageRejection)
    assert "exceeds 64" in result.reason


def test_decode_rejects_bad_sample_alone_and_keeps_its_neighbours() -> None:
    batch = {
        "samples": [
            sample_json(seq=1, metrics={"fuel": 10}),
            sample_json(seq=2, metrics={"fuel": 101}),
            sample_json(seq=3, pos={"lat": 91, "lon": 0}),
            {"seq": 4},
            sample_json(seq=5),
        ]
    }
    result = decode(msgspec.json.encode(batch))
    assert isinstance(result, DecodedTelemetry)
    assert [s.seq for s in result.samples] == [1, 5]
    assert [(r.index, r.seq) for r in result.rejections] == [(1, 2), (2, 3), (3, 4)]
    assert "fuel=101" in result.rejections[0].reason
    assert "missing required field `ts`" in result.rejections[2].reason


@pytest.mark.parametrize(
    ("ts", "expected"),
    [
        (NOW + timedelta(minutes=6), "in the future"),
        (NOW - timedelta(days=31), "older than the retention"),
    ],
)
def test_decode_rejects_timestamps_outside_the_window(ts: datetime, expected: str) -> None:
    result = decode(msgspec.json.encode(sample_json(ts=ts.isoformat())))
    assert isinstance(result, DecodedTelemetry)
    assert result.samples == []
    assert expected in result.rejections[0].reason


def test_decode_rejects_timestamp_without_timezone() -> None:
    result = decode(msgspec.json.encode(sample_json(ts="2026-11-25T12:00:00")))
    assert isinstance(result, DecodedTelemetry)
    assert "timezone" in result.rejections[0].reason


def test_decode_rejects_non_finite_values_in_msgpack() -> None:
    payload = msgspec.msgpack.encode(sample_json(metrics={"rpm": float("inf")}))
    result = decode(payload, "application/msgpack")
    assert isinstance(result, DecodedTelemetry)
    assert "not a finite number" in result.rejections[0].reason


def test_decode_reads_msgpack_when_the_content_type_says_so() -> None:
    batch = TelemetryBatch(samples=[Sample(seq=n, ts=NOW, metrics={"level": 40.0}) for n in range(3)])
    result = decode(msgspec.msgpack.encode(batch), "application/msgpack; charset=binary")
    assert isinstance(result, DecodedTelemetry)
    assert [s.seq for s in result.samples] == [0, 1, 2]


def test_decode_rejects_batches_above_the_sample_limit() -> None:
    batch = {"samples": [sample_json(seq=n) for n in range(5)]}
    result = decode_telemetry(
        msgspec.json.encode(batch), content_type=None, now=NOW, limits=Limits(max_samples_per_message=4)
    )
    assert isinstance(result, MessageRejection)
    assert "exceeds 4" in result.reason


def test_decode_rejects_inconsistent_aggregate() -> None:
    payload = msgspec.json.encode(sample_json(agg={"vibration": {"min": 5, "max": 4, "avg": 4.5, "count": 10}}))
    result = decode(payload)
    assert isinstance(result, DecodedTelemetry)
    assert "min <= avg <= max" in result.rejections[0].reason
