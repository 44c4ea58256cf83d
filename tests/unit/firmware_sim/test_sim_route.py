"""Generated routes and the motion along them: valid coordinates, headings and speeds, deterministic."""

from __future__ import annotations

import itertools
import math

import pytest

from firmware_sim.route import (
    CRUISE_MAX_KMH,
    DEFAULT_CENTRE,
    M_PER_DEG_LAT,
    ROUTE_RADIUS_M,
    Drive,
    GeoPoint,
    Route,
    bearing_deg,
)


def _distance_m(a: GeoPoint, b: GeoPoint) -> float:
    dy = (a.lat - b.lat) * M_PER_DEG_LAT
    dx = (a.lon - b.lon) * M_PER_DEG_LAT * math.cos(math.radians(b.lat))
    return math.hypot(dx, dy)


def test_route_is_deterministic_by_seed() -> None:
    first = list(itertools.islice(Route(7).waypoints(), 200))
    again = list(itertools.islice(Route(7).waypoints(), 200))
    other = list(itertools.islice(Route(8).waypoints(), 200))
    assert first == again
    assert first != other


def test_route_stays_within_the_city_radius() -> None:
    for seed in range(5):
        for x, y in itertools.islice(Route(seed).waypoints(), 3000):
            assert math.hypot(x, y) <= ROUTE_RADIUS_M


def test_route_segments_are_street_like() -> None:
    points = list(itertools.islice(Route("grid").waypoints(), 500))
    lengths = [math.hypot(bx - ax, by - ay) for (ax, ay), (bx, by) in itertools.pairwise(points)]
    assert min(lengths) >= 90.0
    assert max(lengths) <= 8 * 240.0


@pytest.mark.parametrize(
    ("dx", "dy", "expected"),
    [(0.0, 1.0, 0.0), (1.0, 0.0, 90.0), (0.0, -1.0, 180.0), (-1.0, 0.0, 270.0), (-1e-300, 1.0, 0.0)],
)
def test_bearing_is_clockwise_from_north_and_below_360(dx: float, dy: float, expected: float) -> None:
    bearing = bearing_deg(dx, dy)
    assert 0.0 <= bearing < 360.0
    assert bearing == pytest.approx(expected)


def test_drive_reports_valid_position_heading_speed_and_odometer() -> None:
    drive = Drive(Route("d1"), seed="d1", odometer_km=1000.0)
    last_odometer = drive.odometer_km
    speeds: list[float] = []
    for _ in range(20_000):
        motion = drive.advance(1.0)
        assert -90.0 <= motion.position.lat <= 90.0
        assert -180.0 <= motion.position.lon <= 180.0
        assert _distance_m(motion.position, DEFAULT_CENTRE) <= ROUTE_RADIUS_M + 1.0
        assert 0.0 <= motion.heading_deg < 360.0
        assert 0.0 <= motion.speed_kmh <= CRUISE_MAX_KMH + 1e-9
        assert motion.odometer_km >= last_odometer
        assert motion.stopped == (motion.speed_kmh == 0.0)
        last_odometer = motion.odometer_km
        speeds.append(motion.speed_kmh)
    stopped_share = sum(s == 0.0 for s in speeds) / len(speeds)
    assert 0.02 < stopped_share < 0.5, "trucks should wait at some lights, and drive most of the time"
    assert max(speeds) > 60.0
    average_kmh = (drive.odometer_km - 1000.0) / (20_000 / 3600)
    assert 20.0 < average_kmh < 70.0


def test_drive_does_not_depend_on_step_size() -> None:
    coarse = Drive(Route("s"), seed="s")
    fine = Drive(Route("s"), seed="s")
    for _ in range(50):
        big = coarse.advance(10.0)
        for _ in range(20):
            small = fine.advance(0.5)
        assert big == small


def test_drive_accelerates_smoothly_from_a_standstill() -> None:
    drive = Drive(Route("a"), seed="a")
    previous = 0.0
    for _ in range(10):
        motion = drive.advance(1.0)
        # A loaded truck gains at most ~3.6 km/h per second.
        assert motion.speed_kmh - previous <= 3.6 + 1e-9
        previous = motion.speed_kmh


def test_drive_rejects_a_negative_step() -> None:
    with pytest.raises(ValueError, match="dt_s"):
        Drive(Route(1), seed=1).advance(-1.0)


def test_route_refuses_a_centre_near_the_poles() -> None:
    with pytest.raises(ValueError, match="poles"):
        Route(1, centre=GeoPoint(89.0, 0.0))


def test_drive_resumed_from_its_place_continues_where_it_was() -> None:
    route_seed = "resume"
    drive = Drive(Route(route_seed), seed=route_seed, odometer_km=10.0)
    for _ in range(3000):
        drive.advance(1.0)
    where = drive.advance(0.0)
    resumed = Drive(Route(route_seed), seed=route_seed, resume=drive.place())
    there = resumed.advance(0.0)
    assert _distance_m(there.position, where.position) < 1e-6
    assert there.odometer_km == where.odometer_km
    fresh = Drive(Route(route_seed), seed=route_seed).advance(0.0)
    assert _distance_m(fresh.position, where.position) > 1.0, "not back at the start of the route"
    assert resumed.advance(60.0).odometer_km >= where.odometer_km
