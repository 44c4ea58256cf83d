"""The truck model: samples that the bridge's own validation accepts, with plausible values."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from firmware_sim.truck import READINGS_PER_SAMPLE, Truck
from models.telemetry import KNOWN_METRICS, DecodedTelemetry, Limits, Sample, TelemetryBatch, decode_telemetry

START = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def _drive(truck: Truck, steps: int, dt_s: float = 1.0) -> list[Sample]:
    return [truck.step(START + timedelta(seconds=i * dt_s), dt_s) for i in range(steps)]


def test_truck_samples_pass_telemetry_validation_with_zero_rejections() -> None:
    truck = Truck("truck-0001", seed=7)
    limits = Limits()
    for sample in _drive(truck, 10_000):
        decoded = decode_telemetry(msgspec.json.encode(sample), content_type=None, now=sample.ts, limits=limits)
        assert isinstance(decoded, DecodedTelemetry)
        assert decoded.rejections == []
        assert decoded.samples == [sample]


def test_truck_batches_pass_telemetry_validation() -> None:
    samples = _drive(Truck("truck-0002", seed=7), 500, dt_s=0.02)
    payload = msgspec.json.encode(TelemetryBatch(samples=samples))
    decoded = decode_telemetry(payload, content_type=None, now=samples[-1].ts, limits=Limits())
    assert isinstance(decoded, DecodedTelemetry)
    assert decoded.rejections == []
    assert decoded.samples == samples


def test_truck_seq_counts_up_from_zero_without_gaps() -> None:
    samples = _drive(Truck("truck-0003", seed=1, boot=4), 1000)
    assert [s.seq for s in samples] == list(range(1000))
    assert {s.boot for s in samples} == {4}


def test_truck_continues_from_its_first_seq() -> None:
    truck = Truck("truck-0003", first_seq=500)
    assert [s.seq for s in _drive(truck, 3)] == [500, 501, 502]
    assert truck.next_seq == 503


def test_truck_metrics_stay_in_their_known_ranges_and_are_plausible() -> None:
    samples = _drive(Truck("truck-0004", seed=3), 10_000)
    for sample in samples:
        assert set(sample.metrics) == {"fuel", "engine_temp", "odometer"}
        for name, value in sample.metrics.items():
            spec = KNOWN_METRICS[name]
            assert spec.low <= value <= spec.high, (name, value)
        assert sample.quality is not None
        assert 0 <= sample.quality <= 100
        assert sample.readings == READINGS_PER_SAMPLE
    assert all(s.metrics["fuel"] >= 9.0 for s in samples)
    odometer = [s.metrics["odometer"] for s in samples]
    assert odometer == sorted(odometer)
    warm = [s.metrics["engine_temp"] for s in samples[1800:]]
    assert min(warm) >= 80.0
    assert max(warm) <= 100.0


def test_truck_engine_warms_up_from_cold() -> None:
    samples = _drive(Truck("truck-0005", seed=5), 1800)
    assert samples[0].metrics["engine_temp"] < 40.0
    assert samples[-1].metrics["engine_temp"] > 80.0


def test_truck_fuel_falls_and_is_refuelled_at_ten_percent() -> None:
    fuel = [s.metrics["fuel"] for s in _drive(Truck("truck-0006", seed=6, fuel_pct=10.4), 3600)]
    assert fuel[0] < 11.0
    assert max(fuel) > 90.0, "the truck refuels after falling to 10 %"
    refill = next(i for i, f in enumerate(fuel) if f > 50.0)
    assert fuel[refill + 600] < fuel[refill], "and burns fuel again afterwards"


def test_truck_is_deterministic_by_seed_and_id() -> None:
    assert _drive(Truck("truck-0007", seed=9), 200) == _drive(Truck("truck-0007", seed=9), 200)
    assert _drive(Truck("truck-0007", seed=9), 200) != _drive(Truck("truck-0008", seed=9), 200)
    assert _drive(Truck("truck-0007", seed=9), 200) != _drive(Truck("truck-0007", seed=10), 200)


def test_truck_high_rate_samples_stay_valid() -> None:
    limits = Limits()
    for sample in _drive(Truck("truck-0009", seed=2), 5000, dt_s=0.01):
        decoded = decode_telemetry(msgspec.json.encode(sample), content_type=None, now=sample.ts, limits=limits)
        assert isinstance(decoded, DecodedTelemetry)
        assert decoded.rejections == []
