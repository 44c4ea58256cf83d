"""Track points from samples, ignition from events, and the device order every evaluation assumes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.track import TrackPoint, device_order, from_sample, with_ignition
from models.telemetry import Position, Sample

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)


def test_track_point_from_a_sample_keeps_speed_odometer_fuel_and_ignition() -> None:
    sample = Sample(
        seq=4,
        ts=T0,
        pos=Position(lat=50.0, lon=10.0, speed=42.0),
        metrics={"odometer": 1234.5, "fuel": 61.0, "ignition": 1.0},
    )
    assert from_sample(sample) == TrackPoint(
        ts=T0, seq=4, lat=50.0, lon=10.0, speed_kmh=42.0, ignition=True, odometer_km=1234.5, fuel_pct=61.0
    )
    assert from_sample(Sample(seq=5, ts=T0, metrics={"fuel": 60.0})) is None


def test_track_ignition_events_fill_points_that_do_not_report_it() -> None:
    points = [TrackPoint(ts=T0 + timedelta(minutes=m), lat=50, lon=10) for m in range(4)]
    points[3] = TrackPoint(ts=points[3].ts, lat=50, lon=10, ignition=False)
    changes = [(T0 + timedelta(minutes=1), True), (T0 + timedelta(minutes=2, seconds=30), False)]
    assert [p.ignition for p in with_ignition(points, changes)] == [None, True, True, False]


def test_track_device_order_is_total_for_points_at_the_same_time() -> None:
    a = TrackPoint(ts=T0, seq=2, lat=50, lon=10)
    b = TrackPoint(ts=T0, seq=1, lat=51, lon=10)
    c = TrackPoint(ts=T0 - timedelta(seconds=1), seq=9, lat=52, lon=10)
    assert device_order([a, b, c]) == device_order([c, a, b]) == [c, b, a]
