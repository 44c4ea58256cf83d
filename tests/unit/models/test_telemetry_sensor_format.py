"""The field-sensor format: readings and one-second aggregates mapped onto samples of the sending device."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import msgspec
import pytest

from models.telemetry import (
    SENSOR_BOOT,
    Aggregate,
    DecodedTelemetry,
    Limits,
    MessageRejection,
    decode_telemetry,
    sensor_identity,
)

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
NOW_MS = 1_795_608_000_000
DEVICE = "pump-7"


def decode(payload: object, *, msgpack: bool = False, limits: Limits | None = None) -> DecodedTelemetry:
    data = msgspec.msgpack.encode(payload) if msgpack else msgspec.json.encode(payload)
    result = decode_telemetry(
        data,
        content_type="application/msgpack" if msgpack else None,
        now=NOW,
        limits=limits or Limits(),
        device_id=DEVICE,
    )
    assert isinstance(result, DecodedTelemetry), result
    return result


def reading(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {"sensorId": "temperature", "timestamp": NOW_MS, "value": 21.5, "unit": "°C"}
    base.update(fields)
    return {k: v for k, v in base.items() if v is not None}


def aggregate(**fields: object) -> dict[str, object]:
    base: dict[str, object] = {
        "sensorId": "vibration",
        "timestamp": NOW_MS,
        "min": 1.0,
        "max": 4.0,
        "avg": 2.5,
        "count": 1000,
        "stdDev": 0.7,
    }
    base.update(fields)
    return base


@pytest.mark.parametrize("msgpack", [False, True])
def test_decode_maps_a_sensor_reading_onto_a_metric_sample(msgpack: bool) -> None:
    result = decode(reading(quality=87), msgpack=msgpack)
    (sample,) = result.samples
    assert sample.metrics == {"temperature": 21.5}
    assert sample.ts == NOW
    assert sample.quality == 87
    assert (sample.boot, sample.seq) == sensor_identity("temperature", aggregate=False, ts=NOW)
    assert sample.boot == SENSOR_BOOT
    assert 0 <= sample.seq < 2**62


def test_decode_maps_a_one_second_aggregate_with_its_standard_deviation() -> None:
    (sample,) = decode(aggregate()).samples
    assert sample.agg == {"vibration": Aggregate(min=1.0, max=4.0, avg=2.5, count=1000, std=0.7)}
    assert sample.metrics == {}


def test_decode_accepts_an_array_of_readings_with_rfc3339_timestamps_too() -> None:
    result = decode(
        [reading(), reading(sensorId="pressure", unit="PSI", value=80, timestamp=NOW.isoformat()), aggregate()]
    )
    assert result.rejections == []
    assert [sorted({**s.metrics, **s.agg}) for s in result.samples] == [["temperature"], ["pressure"], ["vibration"]]


def test_decode_gives_each_sensor_kind_and_instant_its_own_identity() -> None:
    samples = decode(
        [
            reading(),
            reading(sensorId="level", unit="%", value=3),
            aggregate(sensorId="temperature"),
            reading(timestamp=NOW_MS + 1),
        ]
    ).samples
    # The database key is (device, ts, seq): sensors read at the same instant must differ in seq.
    assert len({(s.ts, s.seq) for s in samples}) == 4
    assert len({s.seq for s in samples}) == 4  # and each (boot, seq) in a reply names one reading


def test_decode_gives_a_redelivered_reading_the_same_identity() -> None:
    first = decode(reading()).samples[0]
    again = decode(reading()).samples[0]
    assert (first.boot, first.seq) == (again.boot, again.seq)


def test_decode_strips_the_sending_devices_own_id_from_a_sensor_id() -> None:
    (sample,) = decode(reading(sensorId=f"{DEVICE}.temperature")).samples
    assert sample.metrics == {"temperature": 21.5}


@pytest.mark.parametrize("sensor_id", ["other-pump.temperature", "Temperature", "temp sensor", "9lives"])
def test_decode_refuses_a_sensor_id_that_names_no_metric_of_this_device(sensor_id: str) -> None:
    result = decode([reading(sensorId=sensor_id), reading()])
    assert len(result.samples) == 1
    (refused,) = result.rejections
    assert refused.index == 0
    assert "names no metric of this device" in refused.reason


def test_decode_refuses_a_unit_that_is_not_the_known_metrics_own() -> None:
    result = decode([reading(unit="°F", value=70), reading(sensorId="rpm", unit="1/min", value=900)])
    assert [s.metrics for s in result.samples] == [{"rpm": 900}]  # an unknown metric's unit is not checked
    (refused,) = result.rejections
    assert "unit '°F'" in refused.reason
    assert "'°C'" in refused.reason
    assert (refused.boot, refused.seq) == sensor_identity("temperature", aggregate=False, ts=NOW)


def test_decode_checks_sensor_values_like_any_metric() -> None:
    result = decode([reading(value=400), aggregate(min=5.0), reading(timestamp=NOW_MS + 3_600_000)])
    assert result.samples == []
    reasons = [r.reason for r in result.rejections]
    assert "outside" in reasons[0]
    assert "min <= avg <= max" in reasons[1]
    assert "in the future" in reasons[2]


@pytest.mark.parametrize(
    ("item", "expected"),
    [
        ({"sensorId": "temperature", "timestamp": NOW_MS}, "needs `value`"),
        (reading(min=1.0), "not both"),
        (reading(quality="excellent"), "quality"),
        (reading(timestamp=NOW_MS // 1000), "multiply by 1000"),
        ({"sensorId": "temperature", "value": 1.0}, "timestamp"),
    ],
)
def test_decode_refuses_a_malformed_sensor_reading_alone(item: dict[str, object], expected: str) -> None:
    result = decode([item, reading()])
    assert len(result.samples) == 1
    (refused,) = result.rejections
    assert refused.index == 0
    assert expected in refused.reason


def test_decode_maps_quality_words() -> None:
    samples = decode([reading(quality=q, value=i) for i, q in enumerate(["good", "uncertain", "bad"])]).samples
    assert [s.quality for s in samples] == [100, 50, 0]


def test_decode_refuses_an_oversize_array_of_readings_whole() -> None:
    result = decode_telemetry(
        msgspec.json.encode([reading()] * 3),
        content_type=None,
        now=NOW,
        limits=Limits(max_samples_per_message=2),
        device_id=DEVICE,
    )
    assert isinstance(result, MessageRejection)
    assert "exceeds 2" in result.reason


def test_decode_keeps_a_sample_with_an_unknown_sensor_id_field_a_sample() -> None:
    # `seq` marks the sample format even if newer firmware adds a `sensorId` field.
    result = decode({"seq": 3, "ts": NOW_MS, "sensorId": "x", "metrics": {"fuel": 1}})
    assert [(s.seq, s.boot) for s in result.samples] == [(3, 0)]


def test_decode_without_a_device_keeps_the_prefix_part_of_the_name() -> None:
    result = decode_telemetry(
        msgspec.json.encode(reading(sensorId=f"{DEVICE}.temperature")), content_type=None, now=NOW, limits=Limits()
    )
    assert isinstance(result, DecodedTelemetry)
    assert result.samples == []
    assert len(result.rejections) == 1


def test_sensor_identity_is_the_same_for_the_same_instant_in_any_spelling() -> None:
    utc = sensor_identity("flow", aggregate=True, ts=NOW)
    offset = sensor_identity("flow", aggregate=True, ts=NOW.astimezone(timezone(timedelta(hours=2))))
    assert utc == offset
    assert utc != sensor_identity("flow", aggregate=True, ts=NOW + timedelta(microseconds=1))
    assert utc != sensor_identity("flow", aggregate=False, ts=NOW)
