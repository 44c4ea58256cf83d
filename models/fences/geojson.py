"""GeoJSON in: a fence document validated into a shape, or the reason it is refused (a value, never raised).

Accepted: a Feature or a bare geometry of type Polygon or MultiPolygon, and a Feature whose geometry is
a Point with a positive `radius_m` property (a circle). Refused, each with its reason: malformed
positions, coordinates out of range, rings with fewer than 4 positions, unclosed rings, rings without
area, rings spanning more than 180° of longitude (split such a fence at the antimeridian), rings that
cross themselves or each other, holes outside their shell, more than `MAX_VERTICES` vertices, and a
radius that is not a positive number.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from models.fences.geometry import Position, Ring, ring_contains, ring_edges, segment_crossing
from models.fences.shapes import CircleFence, Fence, PolygonFence

MAX_VERTICES: Final = 10_000
MIN_RING_POSITIONS: Final = 4  # a triangle and the position that closes it


@dataclass(frozen=True, slots=True)
class FenceRejected:
    """A fence document that cannot be used, and why."""

    fence_id: str
    reason: str


class _InvalidFenceError(Exception):
    """Internal: carries a reason up to `parse_fence`, which turns it into a `FenceRejected` value."""


def decode_fence(fence_id: str, text: bytes | str) -> Fence | FenceRejected:
    """A fence from GeoJSON text."""
    try:
        document = msgspec.json.decode(text)
    except msgspec.DecodeError as exc:
        return FenceRejected(fence_id, f"not JSON: {exc}")
    return parse_fence(fence_id, document)


def parse_fence(fence_id: str, document: object) -> Fence | FenceRejected:
    """A fence from a decoded GeoJSON Feature or geometry."""
    try:
        return _parse(fence_id, document)
    except _InvalidFenceError as invalid:
        return FenceRejected(fence_id, str(invalid))


def _unwrap(document: object) -> tuple[Mapping[str, Any], Mapping[str, Any]]:
    """The geometry and the properties of a Feature, or a bare geometry with no properties."""
    if not isinstance(document, Mapping):
        raise _InvalidFenceError("a fence is a GeoJSON object (a Feature or a geometry)")
    if document.get("type") != "Feature":
        return document, {}
    geometry = document.get("geometry")
    properties = document.get("properties")
    if properties is not None and not isinstance(properties, Mapping):
        raise _InvalidFenceError("a Feature's properties must be an object")
    if not isinstance(geometry, Mapping):
        raise _InvalidFenceError("a fence needs a geometry")
    return geometry, properties or {}


def _parse(fence_id: str, document: object) -> Fence:
    geometry, properties = _unwrap(document)
    kind = geometry.get("type")
    coordinates = geometry.get("coordinates")
    if kind == "Point":
        return _circle(fence_id, coordinates, properties)
    if kind == "Polygon":
        polygons = [_polygon(coordinates, "")]
    elif kind == "MultiPolygon":
        if not isinstance(coordinates, list) or not coordinates:
            raise _InvalidFenceError("a MultiPolygon's coordinates are a non-empty list of polygons")
        polygons = [_polygon(rings, f" of polygon {index}") for index, rings in enumerate(coordinates)]
    else:
        raise _InvalidFenceError(
            f"geometry type {kind!r} is not a fence: use Polygon, MultiPolygon or a Point with radius_m"
        )
    vertices = sum(len(ring) - 1 for rings in polygons for ring in rings)
    if vertices > MAX_VERTICES:
        raise _InvalidFenceError(
            f"the fence has {vertices} vertices; at most {MAX_VERTICES:,} are accepted (simplify it)"
        )
    for index, rings in enumerate(polygons):
        where = f" of polygon {index}" if len(polygons) > 1 else ""
        _check_simple(rings, where)
        for ring_index, ring in enumerate(rings):
            # Checked after crossings: a bow tie's two halves cancel out, and "intersects itself" says why.
            if sum(x1 * y2 - x2 * y1 for (x1, y1), (x2, y2) in itertools.pairwise(ring)) == 0:
                raise _InvalidFenceError(f"ring {ring_index}{where} has no area (its vertices are on one line)")
    return PolygonFence(fence_id, polygons, properties)


def _circle(fence_id: str, coordinates: object, properties: Mapping[str, Any]) -> CircleFence:
    center = _position(coordinates, "the circle's centre")
    radius = properties.get("radius_m")
    if isinstance(radius, bool) or not isinstance(radius, int | float) or not math.isfinite(radius):
        raise _InvalidFenceError("a Point fence is a circle: it needs a radius_m property, a number of metres")
    if radius <= 0:
        raise _InvalidFenceError(f"radius_m must be positive, got {radius}")
    return CircleFence(fence_id, center, float(radius), properties)


def _plain_position(value: object) -> Position | None:
    """The common case, checked fast: [lon, lat] as two floats in range (NaN and infinity fail the range)."""
    if type(value) is list and len(value) == 2:
        lon, lat = value
        if type(lon) is float and type(lat) is float and -180 <= lon <= 180 and -90 <= lat <= 90:
            return lon, lat
    return None


def _position(value: object, where: str) -> Position:
    if not isinstance(value, list) or len(value) not in (2, 3):
        raise _InvalidFenceError(f"{where}: a position is [longitude, latitude] (optionally with an altitude)")
    lon, lat = value[0], value[1]
    for number in (lon, lat):
        if isinstance(number, bool) or not isinstance(number, int | float) or not math.isfinite(number):
            raise _InvalidFenceError(f"{where}: coordinates must be finite numbers, got {value!r}")
    if not (-180 <= lon <= 180 and -90 <= lat <= 90):
        raise _InvalidFenceError(
            f"{where}: position {value!r} is out of range (longitude within -180…180, latitude within -90…90)"
        )
    return float(lon), float(lat)


def _polygon(coordinates: object, where: str) -> tuple[Ring, ...]:
    if not isinstance(coordinates, list) or not coordinates:
        raise _InvalidFenceError(f"a polygon{where} is a non-empty list of rings")
    return tuple(_ring(ring, f"ring {index}{where}") for index, ring in enumerate(coordinates))


def _ring(value: object, where: str) -> Ring:
    if not isinstance(value, list):
        raise _InvalidFenceError(f"{where} is not a list of positions")
    if len(value) < MIN_RING_POSITIONS:
        raise _InvalidFenceError(f"{where} has {len(value)} positions; a ring needs at least {MIN_RING_POSITIONS}")
    if len(value) > MAX_VERTICES + 1:
        raise _InvalidFenceError(
            f"{where} has {len(value) - 1} vertices; at most {MAX_VERTICES:,} are accepted (simplify it)"
        )
    positions = [_plain_position(position) or _position(position, where) for position in value]
    if positions[0] != positions[-1]:
        raise _InvalidFenceError(f"{where} is not closed: its first and last positions differ")
    # A repeated position (a double click in a drawing tool) adds an edge of no length: dropped, not refused.
    ring = [positions[0]]
    ring.extend(p for previous, p in itertools.pairwise(positions) if p != previous)
    if len(ring) < MIN_RING_POSITIONS:
        raise _InvalidFenceError(
            f"{where} has fewer than 3 distinct vertices; a ring needs at least {MIN_RING_POSITIONS} positions"
        )
    lons = [lon for lon, _ in ring]
    if max(lons) - min(lons) > 180:
        raise _InvalidFenceError(
            f"{where} spans more than 180° of longitude: split a fence that crosses the antimeridian"
        )
    return tuple(ring)


def _check_simple(rings: tuple[Ring, ...], where: str) -> None:
    """Refuse rings that cross themselves or one another, and holes outside their shell.

    A sweep along longitude: edges sorted by their western end, each compared only with the edges
    that start before it ends (and overlap it in latitude). A fence's edges rarely overlap many others
    in longitude, so this is near n log n instead of 50 million comparisons for 10,000 vertices.
    """
    edges = sorted(
        (min(x1, x2), max(x1, x2), min(y1, y2), max(y1, y2), ring_index, edge_index, (x1, y1, x2, y2))
        for ring_index, ring in enumerate(rings)
        for edge_index, ((x1, y1), (x2, y2)) in enumerate(itertools.pairwise(ring))
    )
    ring_sizes = [len(ring) - 1 for ring in rings]
    for i, (_, a_east, a_south, a_north, a_ring, a_index, a) in enumerate(edges):
        for j in range(i + 1, len(edges)):
            b_west, _, b_south, b_north, b_ring, b_index, b = edges[j]
            if b_west > a_east:
                break
            if b_south > a_north or a_south > b_north:
                continue
            if a_ring == b_ring and _adjacent(a_index, b_index, ring_sizes[a_ring]):
                continue
            if _touch(a, b):
                x, y = a[0], a[1]
                if a_ring == b_ring:
                    raise _InvalidFenceError(f"ring {a_ring}{where} intersects itself (near edge from [{x}, {y}])")
                raise _InvalidFenceError(
                    f"rings {min(a_ring, b_ring)} and {max(a_ring, b_ring)}{where} cross each other (near [{x}, {y}])"
                )
    # Rings do not cross, so one vertex tells on which side of another ring a whole ring lies.
    ring_edge_lists = [ring_edges(ring) for ring in rings]
    for index, hole in enumerate(rings[1:], start=1):
        lon, lat = hole[0]
        if not ring_contains(lon, lat, ring_edge_lists[0]):
            raise _InvalidFenceError(f"ring {index}{where} is a hole outside its shell")
        for other in range(1, len(rings)):
            if other != index and ring_contains(lon, lat, ring_edge_lists[other]):
                raise _InvalidFenceError(f"ring {index}{where} lies inside hole {other}: holes may not nest")


def _adjacent(i: int, j: int, size: int) -> bool:
    return abs(i - j) == 1 or abs(i - j) == size - 1


def _touch(a: tuple[float, float, float, float], b: tuple[float, float, float, float]) -> bool:
    """Whether two edges share any point, end points and collinear overlaps included."""
    if segment_crossing((a[0], a[1]), (a[2], a[3]), b) is not None:
        return True
    # Parallel edges: they touch only when collinear and overlapping.
    ax, ay, bx, by = a
    cx, cy, dx, dy = b
    if (bx - ax) * (cy - ay) - (by - ay) * (cx - ax) != 0 or (bx - ax) * (dy - ay) - (by - ay) * (dx - ax) != 0:
        return False
    return max(min(ax, bx), min(cx, dx)) <= min(max(ax, bx), max(cx, dx)) and max(min(ay, by), min(cy, dy)) <= min(
        max(ay, by), max(cy, dy)
    )
