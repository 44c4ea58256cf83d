"""Enter and exit by device time: hysteresis at the border, interpolated crossings, late points, the index."""

from __future__ import annotations

import itertools
import math
import random
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from engine.fence_index import FenceIndex
from engine.geofence import DeviceFenceState, FenceTracker, fence_events, time_inside, visits
from engine.track import TrackPoint, device_order
from models.earth import M_PER_DEG_LAT, LocalPlane
from models.fences.geojson import parse_fence
from models.fences.geometry import ring_contains, ring_edges
from models.fences.shapes import CircleFence, Fence, PolygonFence

T0 = datetime(2026, 3, 2, 8, tzinfo=UTC)
SQUARE = [[10.0, 50.0], [10.01, 50.0], [10.01, 50.01], [10.0, 50.01], [10.0, 50.0]]  # ~715 m × 1,112 m
HOLE = [[10.004, 50.004], [10.006, 50.004], [10.006, 50.006], [10.004, 50.006], [10.004, 50.004]]


def fence(fence_id: str, document: object) -> Fence:
    built = parse_fence(fence_id, document)
    assert isinstance(built, PolygonFence | CircleFence), built
    return built


def square(fence_id: str = "yard", *holes: list[list[float]]) -> Fence:
    return fence(fence_id, {"type": "Polygon", "coordinates": [SQUARE, *holes]})


def point(seconds: float, lon: float, lat: float = 50.005) -> TrackPoint:
    return TrackPoint(ts=T0 + timedelta(seconds=seconds), lat=lat, lon=lon)


def seconds(at: datetime) -> float:
    return (at - T0).total_seconds()


def kinds_and_times(events: list) -> list[tuple[str, str, float]]:  # type: ignore[type-arg]
    return [(event.fence_id, event.kind, round(seconds(event.at), 3)) for event in events]


# A truck driving east across the yard at latitude 50.005, where 0.0001° of longitude is 7.15 m. Its fixes
# jitter across each border inside the 20 m band before it is clearly through.
JITTERY_CROSSING = [
    point(0, 9.9990),  # 71 m outside
    point(5, 9.9997),  # 21 m outside
    point(10, 10.0001),  # 7 m inside: in the band
    point(15, 9.9999),  # 7 m outside: in the band (the last fix outside)
    point(20, 10.0002),  # 14 m inside: in the band
    point(25, 10.0006),  # 43 m inside: entered, at the crossing 1/3 of the way from 15 s to 20 s
    point(60, 10.005),
    point(100, 10.0095),  # 36 m inside
    point(105, 10.0099),  # band
    point(110, 10.0101),  # band, outside
    point(115, 10.0098),  # band, inside (the last fix inside)
    point(120, 10.0102),  # band, outside
    point(125, 10.0104),  # 29 m outside: left, at the crossing halfway from 115 s to 120 s
    point(140, 10.0120),
]


def test_geofence_jittery_crossing_gives_one_enter_and_one_exit_at_the_interpolated_times() -> None:
    events, _ = fence_events("truck", JITTERY_CROSSING, FenceIndex([square()], tolerance_m=20))
    assert [(e.kind, e.crossed) for e in events] == [("enter", True), ("exit", True)]
    assert seconds(events[0].at) == pytest.approx(15 + 5 / 3, abs=1e-3)
    assert seconds(events[1].at) == pytest.approx(117.5, abs=1e-3)


def test_geofence_without_a_band_the_same_jitter_flaps() -> None:
    events, _ = fence_events("truck", JITTERY_CROSSING, FenceIndex([square()], tolerance_m=0))
    assert [e.kind for e in events] == ["enter", "exit", "enter", "exit", "enter", "exit"]


def test_geofence_circle_crossings_are_where_the_track_meets_the_radius() -> None:
    ring = fence(
        "ring",
        {
            "type": "Feature",
            "geometry": {"type": "Point", "coordinates": [10.0, 50.0]},
            "properties": {"radius_m": 200},
        },
    )
    track = [point(10 * i, 9.99 + 0.001 * i, lat=50.0) for i in range(21)]
    events, _ = fence_events("truck", track, FenceIndex([ring], tolerance_m=10))
    edge_deg = 200 / LocalPlane.around(10.0, 50.0).m_per_deg_lon  # the radius in degrees of longitude
    assert kinds_and_times(events) == [
        ("ring", "enter", pytest.approx((0.01 - edge_deg) / 0.001 * 10, abs=0.05)),
        ("ring", "exit", pytest.approx((0.01 + edge_deg) / 0.001 * 10, abs=0.05)),
    ]


def _drive_east(start_lon: float, end_lon: float) -> list[TrackPoint]:
    steps = round((end_lon - start_lon) / 0.0005)
    return [point(10 * i, start_lon + 0.0005 * i) for i in range(steps + 1)]  # 36 m every 10 s


def test_geofence_a_hole_is_outside() -> None:
    yard = square("yard", HOLE)
    assert yard.contains(10.002, 50.005)
    assert not yard.contains(10.005, 50.005)
    events, _ = fence_events("truck", _drive_east(9.998, 10.012), FenceIndex([yard], tolerance_m=10))
    assert kinds_and_times(events) == [
        ("yard", "enter", pytest.approx(40, abs=0.01)),
        ("yard", "exit", pytest.approx(120, abs=0.01)),
        ("yard", "enter", pytest.approx(160, abs=0.01)),
        ("yard", "exit", pytest.approx(240, abs=0.01)),
    ]


def test_geofence_multipolygon_is_inside_any_of_its_polygons() -> None:
    east = [[lon + 0.02, lat] for lon, lat in SQUARE]
    both = fence("sites", {"type": "MultiPolygon", "coordinates": [[SQUARE], [east]]})
    assert both.contains(10.005, 50.005)
    assert both.contains(10.025, 50.005)
    assert not both.contains(10.015, 50.005)
    events, _ = fence_events("truck", _drive_east(9.998, 10.032), FenceIndex([both], tolerance_m=10))
    assert [(kind, round(at)) for _, kind, at in kinds_and_times(events)] == [
        ("enter", 40),
        ("exit", 240),
        ("enter", 440),
        ("exit", 640),
    ]


def test_geofence_first_point_inside_enters_without_a_crossing() -> None:
    events, state = fence_events("truck", [point(0, 10.005), point(10, 10.006)], FenceIndex([square()], 20))
    assert [(e.kind, e.at, e.crossed) for e in events] == [("enter", T0, False)]
    assert set(state.fences) == {"yard"}
    tracker = FenceTracker("truck", FenceIndex([square()], 20), state)
    assert tracker.inside() == {"yard"}
    tracker.step(point(20, 10.02))
    assert tracker.inside() == frozenset()


def test_geofence_late_point_is_evaluated_in_device_order_and_fires_no_false_exit() -> None:
    index = FenceIndex([square()], tolerance_m=20)
    on_time = [point(0, 9.995), point(10, 10.002), point(20, 10.004), point(30, 10.005)]
    late = point(5, 9.999)  # 71 m outside, sent from the device's buffer after the others

    # Handled in arrival order, the late fix would look like a jump back out of the yard.
    naive = FenceTracker("truck", index)
    arrival_events = [event for p in [*on_time, late] for event in naive.step(p)]
    assert [e.kind for e in arrival_events] == ["enter", "exit"]

    # The engine re-evaluates from the state it saved before the late point's time.
    _, checkpoint = fence_events("truck", on_time[:1], index)
    redone, _ = fence_events("truck", device_order([*on_time[1:], late]), index, checkpoint)
    in_order, _ = fence_events("truck", device_order([*on_time, late]), index)
    assert redone == in_order
    assert [(e.kind, round(seconds(e.at), 3)) for e in redone] == [("enter", round(5 + 5 * 1 / 3, 3))]


def test_geofence_state_is_stored_and_resumed_without_changing_the_events() -> None:
    index = FenceIndex([square()], tolerance_m=20)
    whole, _ = fence_events("truck", JITTERY_CROSSING, index)
    for cut in range(1, len(JITTERY_CROSSING)):
        first, state = fence_events("truck", JITTERY_CROSSING[:cut], index)
        stored = msgspec.msgpack.decode(msgspec.msgpack.encode(state), type=DeviceFenceState)
        rest, _ = fence_events("truck", JITTERY_CROSSING[cut:], index, stored)
        assert first + rest == whole


def test_geofence_removed_fence_is_forgotten() -> None:
    _, state = fence_events("truck", [point(0, 10.005)], FenceIndex([square()], 20))
    events, after = fence_events("truck", [point(10, 10.005)], FenceIndex([], 20), state)
    assert events == []
    assert after.fences == {}


def test_geofence_time_inside_over_a_range() -> None:
    index = FenceIndex([square()], tolerance_m=20)
    events, _ = fence_events("truck", JITTERY_CROSSING, index)
    stays = visits(events)
    assert len(stays) == 1
    total = time_inside(stays, T0, T0 + timedelta(minutes=10))
    assert total["yard"].total_seconds() == pytest.approx(117.5 - (15 + 5 / 3), abs=1e-3)
    assert time_inside(stays, T0 + timedelta(seconds=100), T0 + timedelta(minutes=10))["yard"] == timedelta(
        seconds=17.5
    )
    assert time_inside(stays, T0 + timedelta(minutes=5), T0 + timedelta(minutes=10)) == {}


def test_geofence_time_inside_counts_an_open_visit_until_the_end_of_the_range() -> None:
    events, _ = fence_events("truck", JITTERY_CROSSING[:8], FenceIndex([square()], tolerance_m=20))
    (stay,) = visits(events)
    assert stay.exited_at is None
    assert time_inside([stay], T0, T0 + timedelta(seconds=100))["yard"].total_seconds() == pytest.approx(
        100 - 15 - 5 / 3, abs=1e-3
    )


def test_geofence_index_finds_what_a_scan_of_every_fence_finds() -> None:
    rng = random.Random(7)
    fences: list[Fence] = []
    for n in range(300):
        lon, lat = 10 + rng.uniform(0, 1), 50 + rng.uniform(0, 1)
        size = rng.uniform(0.001, 0.02)
        if n % 3 == 0:
            fences.append(
                fence(
                    f"c{n}",
                    {
                        "type": "Feature",
                        "geometry": {"type": "Point", "coordinates": [lon, lat]},
                        "properties": {"radius_m": size * M_PER_DEG_LAT},
                    },
                )
            )
        else:
            ring = [[lon, lat], [lon + size, lat], [lon + size, lat + size], [lon, lat + size], [lon, lat]]
            fences.append(fence(f"p{n}", {"type": "Polygon", "coordinates": [ring]}))
    region = [[9.5, 49.5], [11.5, 49.5], [11.5, 51.5], [9.5, 51.5], [9.5, 49.5]]  # larger than the grid takes
    fences.append(fence("region", {"type": "Polygon", "coordinates": [region]}))
    index = FenceIndex(fences, tolerance_m=25)
    grown = [(f.fence_id, f.bbox.grown(25)) for f in fences]
    for _ in range(3000):
        lon, lat = 9.9 + rng.uniform(0, 1.2), 49.9 + rng.uniform(0, 1.2)
        expected = {fence_id for fence_id, box in grown if box.contains(lon, lat)}
        assert set(index.near(lon, lat)) == expected
    assert "region" in index.near(10.5, 50.5)


def _star(rng: random.Random, vertices: int) -> list[list[float]]:
    ring = []
    for i in range(vertices):
        angle, r = 2 * math.pi * i / vertices, 0.01 * rng.uniform(0.3, 1.0)
        ring.append([10.0 + r * math.cos(angle), 50.0 + r * math.sin(angle)])
    return [*ring, ring[0]]


def _distance_m(plane: LocalPlane, lon: float, lat: float, ring: list[list[float]]) -> float:
    px, py = plane.xy(lon, lat)
    best = math.inf
    for (x1, y1), (x2, y2) in itertools.pairwise(ring):
        (ax, ay), (bx, by) = plane.xy(x1, y1), plane.xy(x2, y2)
        dx, dy = bx - ax, by - ay
        t = max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / (dx * dx + dy * dy)))
        best = min(best, math.hypot(px - ax - t * dx, py - ay - t * dy))
    return best


@pytest.mark.parametrize("vertices", [20, 200, 3000])
def test_geofence_latitude_slabs_agree_with_testing_every_edge(vertices: int) -> None:
    rng = random.Random(vertices)
    ring = _star(rng, vertices)
    shape = fence("star", {"type": "Polygon", "coordinates": [ring]})
    edges = ring_edges(tuple((x, y) for x, y in ring))
    box = shape.bbox
    plane = LocalPlane.around((box.min_lon + box.max_lon) / 2, (box.min_lat + box.max_lat) / 2)
    for _ in range(min(1500, 400_000 // vertices)):  # the full comparison costs a vertex per point
        lon, lat = 10.0 + rng.uniform(-0.012, 0.012), 50.0 + rng.uniform(-0.012, 0.012)
        if rng.random() < 0.3:  # on a vertex's latitude: where slab and ray edge cases meet
            lat = ring[rng.randrange(vertices)][1]
        assert shape.contains(lon, lat) == ring_contains(lon, lat, edges)
        assert shape.near_border(lon, lat, 25.0) == (_distance_m(plane, lon, lat, ring) <= 25.0)
