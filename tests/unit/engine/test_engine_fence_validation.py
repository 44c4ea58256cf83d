"""Fence documents: what is refused, with which reason (a value, never an exception), and what round-trips."""

from __future__ import annotations

import math
import random
from typing import Any

import msgspec
import pytest

from models.fences.geojson import MAX_VERTICES, FenceRejected, decode_fence, parse_fence
from models.fences.shapes import CircleFence, PolygonFence

SQUARE = [[10.0, 50.0], [10.01, 50.0], [10.01, 50.01], [10.0, 50.01], [10.0, 50.0]]
HOLE = [[10.004, 50.004], [10.006, 50.004], [10.006, 50.006], [10.004, 50.006], [10.004, 50.004]]


def polygon(*rings: list[list[float]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


def circle(lon: float, lat: float, radius: object) -> dict[str, Any]:
    return {
        "type": "Feature",
        "geometry": {"type": "Point", "coordinates": [lon, lat]},
        "properties": {"radius_m": radius},
    }


def regular_ring(vertices: int, lon: float = 10.0, lat: float = 50.0, radius_deg: float = 0.01) -> list[list[float]]:
    ring = [
        [
            lon + radius_deg * math.cos(2 * math.pi * i / vertices),
            lat + radius_deg * math.sin(2 * math.pi * i / vertices),
        ]
        for i in range(vertices)
    ]
    return [*ring, ring[0]]


def reason(document: object) -> str:
    result = parse_fence("f1", document)
    assert isinstance(result, FenceRejected), result
    assert result.fence_id == "f1"
    return result.reason


def test_fence_unclosed_ring_is_refused() -> None:
    assert (
        reason(polygon([*SQUARE[:-1], [10.0, 50.005]])) == "ring 0 is not closed: its first and last positions differ"
    )


def test_fence_self_intersecting_ring_is_refused() -> None:
    bow_tie = [[10.0, 50.0], [10.02, 50.0], [10.0, 50.01], [10.01, 50.01], [10.0, 50.0]]
    assert reason(polygon(bow_tie)).startswith("ring 0 intersects itself")


def test_fence_ring_touching_itself_at_a_vertex_is_refused() -> None:
    figure_eight = [[0, 0], [1, 1], [2, 0], [2, 2], [1, 1], [0, 2], [0, 0]]
    assert reason(polygon(figure_eight)).startswith("ring 0 intersects itself")


def test_fence_with_more_than_ten_thousand_vertices_is_refused() -> None:
    assert MAX_VERTICES == 10_000
    assert reason(polygon(regular_ring(10_001))) == (
        "ring 0 has 10001 vertices; at most 10,000 are accepted (simplify it)"
    )
    shell, hole = regular_ring(6_000), regular_ring(5_000, radius_deg=0.005)
    assert reason(polygon(shell, hole)) == "the fence has 11000 vertices; at most 10,000 are accepted (simplify it)"


def test_fence_with_ten_thousand_vertices_is_accepted() -> None:
    assert isinstance(parse_fence("f1", polygon(regular_ring(10_000))), PolygonFence)


def test_fence_ring_with_fewer_than_four_positions_is_refused() -> None:
    assert reason(polygon([[10.0, 50.0], [10.01, 50.0], [10.0, 50.0]])) == (
        "ring 0 has 3 positions; a ring needs at least 4"
    )
    repeated = [[10.0, 50.0], [10.01, 50.0], [10.01, 50.0], [10.0, 50.0]]
    assert reason(polygon(repeated)).startswith("ring 0 has fewer than 3 distinct vertices")


@pytest.mark.parametrize("radius", [0, -5, -0.1])
def test_fence_circle_radius_must_be_positive(radius: float) -> None:
    assert reason(circle(10.0, 50.0, radius)) == f"radius_m must be positive, got {radius}"


@pytest.mark.parametrize("radius", [None, "100", True, math.inf])
def test_fence_circle_radius_must_be_a_number(radius: object) -> None:
    assert reason(circle(10.0, 50.0, radius)).startswith("a Point fence is a circle: it needs a radius_m property")


@pytest.mark.parametrize(
    "document",
    [
        polygon([[10.0, 50.0], [190.0, 50.0], [10.0, 51.0], [10.0, 50.0]]),
        polygon([[10.0, 50.0], [11.0, 50.0], [10.0, 91.0], [10.0, 50.0]]),
        circle(-180.5, 0.0, 10),
        circle(0.0, -90.01, 10),
    ],
)
def test_fence_coordinates_out_of_range_are_refused(document: object) -> None:
    assert "is out of range (longitude within -180…180, latitude within -90…90)" in reason(document)


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ([1, 2], "a fence is a GeoJSON object (a Feature or a geometry)"),
        ({"type": "LineString", "coordinates": [[0, 0], [1, 1]]}, "geometry type 'LineString' is not a fence"),
        ({"type": "Feature", "geometry": None}, "a fence needs a geometry"),
        ({"type": "Point", "coordinates": [10, 50]}, "a Point fence is a circle: it needs a radius_m property"),
        (polygon([[10.0, 50.0], [10.01, "x"], [10.0, 50.01], [10.0, 50.0]]), "ring 0: coordinates must be finite"),
        (polygon([[10.0, 50.0], [10.01, math.nan], [10.0, 50.01], [10.0, 50.0]]), "ring 0: coordinates must be finite"),
        (polygon([[10.0, 50.0], [10.01], [10.0, 50.01], [10.0, 50.0]]), "ring 0: a position is [longitude, latitude]"),
        (polygon([[10.0, 50.0], [10.01, 50.0], [10.02, 50.0], [10.0, 50.0]]), "ring 0 has no area"),
        (polygon([[-170.0, 0.0], [170.0, 0.0], [170.0, 1.0], [-170.0, 0.0]]), "ring 0 spans more than 180°"),
        (polygon(SQUARE, [[10.02, 50.0], [10.03, 50.0], [10.03, 50.01], [10.02, 50.0]]), "ring 1 is a hole outside"),
        (
            polygon(SQUARE, [[10.005, 50.005], [10.02, 50.005], [10.005, 50.006], [10.005, 50.005]]),
            "rings 0 and 1 cross",
        ),
        (
            polygon(SQUARE, HOLE, [[10.0045, 50.0045], [10.0055, 50.0045], [10.0055, 50.0055], [10.0045, 50.0045]]),
            "ring 2 lies inside hole 1: holes may not nest",
        ),
        ({"type": "MultiPolygon", "coordinates": [[SQUARE], [SQUARE[:-1]]]}, "ring 0 of polygon 1 is not closed"),
    ],
)
def test_fence_other_malformed_documents_are_refused_with_their_reason(document: object, expected: str) -> None:
    assert reason(document).startswith(expected)


def test_fence_not_json_is_refused() -> None:
    result = decode_fence("f1", b"{not json")
    assert isinstance(result, FenceRejected)
    assert result.reason.startswith("not JSON")


def test_fence_polygon_with_a_hole_round_trips_as_geojson() -> None:
    feature = {"type": "Feature", "geometry": polygon(SQUARE, HOLE), "properties": {"name": "Depot"}}
    fence = decode_fence("depot", msgspec.json.encode(feature))
    assert isinstance(fence, PolygonFence)
    document = fence.to_geojson()
    assert document == {
        "type": "Feature",
        "id": "depot",
        "geometry": {"type": "Polygon", "coordinates": [SQUARE, HOLE]},
        "properties": {"name": "Depot"},
    }
    again = parse_fence("depot", document)
    assert isinstance(again, PolygonFence)
    assert again.polygons == fence.polygons


def test_fence_multipolygon_and_circle_round_trip_as_geojson() -> None:
    east = [[lon + 0.02, lat] for lon, lat in SQUARE]
    multi = parse_fence("two", {"type": "MultiPolygon", "coordinates": [[SQUARE], [east]]})
    assert isinstance(multi, PolygonFence)
    assert multi.to_geojson()["geometry"] == {"type": "MultiPolygon", "coordinates": [[SQUARE], [east]]}
    ring = parse_fence("ring", circle(10.0, 50.0, 250))
    assert isinstance(ring, CircleFence)
    assert ring.to_geojson() == {
        "type": "Feature",
        "id": "ring",
        "geometry": {"type": "Point", "coordinates": [10.0, 50.0]},
        "properties": {"radius_m": 250.0},
    }


def test_fence_repeated_positions_are_dropped_not_refused() -> None:
    doubled = [SQUARE[0], SQUARE[1], SQUARE[1], *SQUARE[2:]]
    fence = parse_fence("f1", polygon(doubled))
    assert isinstance(fence, PolygonFence)
    assert fence.polygons[0][0] == tuple(tuple(p) for p in SQUARE)


def _brute_force_simple(ring: list[list[float]]) -> bool:
    from models.fences.geometry import segment_crossing

    edges = [(*ring[i], *ring[i + 1]) for i in range(len(ring) - 1)]
    n = len(edges)
    for i in range(n):
        for j in range(i + 1, n):
            if j - i in (1, n - 1):
                continue
            a, b = edges[i], edges[j]
            if segment_crossing((a[0], a[1]), (a[2], a[3]), b) is not None:
                return False
    return True


def test_fence_grid_finds_every_self_intersection_a_full_comparison_finds() -> None:
    rng = random.Random(3)
    refused = 0
    for _ in range(400):
        size = rng.randint(3, 25)
        ring = [[rng.uniform(0, 1), rng.uniform(0, 1)] for _ in range(size)]
        ring.append(ring[0])
        result = parse_fence("f1", polygon(ring))
        crossing = isinstance(result, FenceRejected) and "intersects itself" in result.reason
        assert crossing == (not _brute_force_simple(ring)), ring
        refused += crossing
    assert 0 < refused < 400
