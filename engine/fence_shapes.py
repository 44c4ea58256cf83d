"""Fence shapes, validated and ready to test positions against: polygons (with holes, or several) and circles.

Positions are (lon, lat) in degrees, as in GeoJSON. Whether a position is inside is decided in degrees
(an even-odd ray test); how far it is from the border, in metres on the fence's own `LocalPlane`. Where a
segment between two positions crosses the border is a fraction of the segment: the plane is affine, so the
fraction is the same in degrees and in metres.

Shapes are built by `engine.fence_geojson`, which validates GeoJSON first; constructing one directly
assumes valid, closed rings.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.earth import LocalPlane, degrees_lat, degrees_lon, haversine_m

Position = tuple[float, float]  # (lon, lat)
Ring = tuple[Position, ...]  # closed: the last position repeats the first
Edge = tuple[float, float, float, float]  # x1, y1, x2, y2


@dataclass(frozen=True, slots=True)
class BBox:
    """A box in degrees; fences do not cross the antimeridian, so min ≤ max always."""

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def grown(self, metres: float) -> BBox:
        """The box grown by `metres` on every side (longitude degrees taken at its widest latitude)."""
        widest = max(abs(self.min_lat), abs(self.max_lat))
        dlon, dlat = degrees_lon(metres, widest), degrees_lat(metres)
        return BBox(
            max(-180.0, self.min_lon - dlon),
            max(-90.0, self.min_lat - dlat),
            min(180.0, self.max_lon + dlon),
            min(90.0, self.max_lat + dlat),
        )

    def contains(self, lon: float, lat: float) -> bool:
        """Whether the position is in the box, borders included."""
        return self.min_lon <= lon <= self.max_lon and self.min_lat <= lat <= self.max_lat


def ring_edges(ring: Ring) -> tuple[Edge, ...]:
    """A closed ring's edges."""
    return tuple((x1, y1, x2, y2) for (x1, y1), (x2, y2) in itertools.pairwise(ring))


def ring_contains(x: float, y: float, edges: tuple[Edge, ...]) -> bool:
    """Whether (x, y) is inside the ring of `edges` (even-odd rule)."""
    inside = False
    for x1, y1, x2, y2 in edges:
        if (y1 > y) != (y2 > y) and x < (x2 - x1) * (y - y1) / (y2 - y1) + x1:
            inside = not inside
    return inside


def _segment_distance(px: float, py: float, edge: Edge) -> float:
    x1, y1, x2, y2 = edge
    dx, dy = x2 - x1, y2 - y1
    length2 = dx * dx + dy * dy
    t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((px - x1) * dx + (py - y1) * dy) / length2))
    return math.hypot(px - (x1 + t * dx), py - (y1 + t * dy))


def segment_crossing(a: Position, b: Position, edge: Edge) -> float | None:
    """Where segment a→b meets `edge`, as a fraction of a→b (0 at a, 1 at b); None when they do not meet."""
    ax, ay = a
    dx, dy = b[0] - ax, b[1] - ay
    x1, y1, x2, y2 = edge
    ex, ey = x2 - x1, y2 - y1
    denominator = dx * ey - dy * ex
    if denominator == 0:
        return None  # parallel: a segment running along the border crosses it at an end, found on the next edge
    qx, qy = x1 - ax, y1 - ay
    t = (qx * ey - qy * ex) / denominator
    u = (qx * dy - qy * dx) / denominator
    return t if 0.0 <= t <= 1.0 and 0.0 <= u <= 1.0 else None


class _PolygonPart:
    """One polygon of a fence: a shell and its holes, with their edges in degrees and in metres."""

    __slots__ = ("bbox", "edges", "hole_edges", "rings", "shell_edges")

    def __init__(self, rings: tuple[Ring, ...]) -> None:
        self.rings = rings
        self.shell_edges = ring_edges(rings[0])
        self.hole_edges = tuple(ring_edges(hole) for hole in rings[1:])
        self.edges = self.shell_edges + tuple(edge for hole in self.hole_edges for edge in hole)
        lons = [lon for lon, _ in rings[0]]
        lats = [lat for _, lat in rings[0]]
        self.bbox = BBox(min(lons), min(lats), max(lons), max(lats))

    def contains(self, lon: float, lat: float) -> bool:
        return (
            self.bbox.contains(lon, lat)
            and ring_contains(lon, lat, self.shell_edges)
            and not any(ring_contains(lon, lat, hole) for hole in self.hole_edges)
        )


class PolygonFence:
    """A Polygon or MultiPolygon fence; a position is inside when it is inside any of its polygons."""

    __slots__ = ("_parts", "_plane", "_plane_edges", "bbox", "fence_id", "properties")

    def __init__(self, fence_id: str, polygons: Sequence[tuple[Ring, ...]], properties: Mapping[str, Any]) -> None:
        self.fence_id = fence_id
        self.properties = dict(properties)
        self._parts = tuple(_PolygonPart(rings) for rings in polygons)
        boxes = [part.bbox for part in self._parts]
        self.bbox = BBox(
            min(box.min_lon for box in boxes),
            min(box.min_lat for box in boxes),
            max(box.max_lon for box in boxes),
            max(box.max_lat for box in boxes),
        )
        self._plane = LocalPlane.around(
            (self.bbox.min_lon + self.bbox.max_lon) / 2, (self.bbox.min_lat + self.bbox.max_lat) / 2
        )
        xy = self._plane.xy
        self._plane_edges = tuple((*xy(x1, y1), *xy(x2, y2)) for part in self._parts for x1, y1, x2, y2 in part.edges)

    @property
    def polygons(self) -> tuple[tuple[Ring, ...], ...]:
        """Each polygon's rings: the shell, then its holes."""
        return tuple(part.rings for part in self._parts)

    def contains(self, lon: float, lat: float) -> bool:
        """Whether the position is inside (the border itself counts as either side)."""
        return any(part.contains(lon, lat) for part in self._parts)

    def border_distance_m(self, lon: float, lat: float) -> float:
        """Metres from the position to the nearest border (a shell's or a hole's)."""
        px, py = self._plane.xy(lon, lat)
        return min(_segment_distance(px, py, edge) for edge in self._plane_edges)

    def last_crossing(self, a: Position, b: Position) -> float | None:
        """The fraction of a→b where it last crosses the border; None when it does not cross it."""
        found = None
        for part in self._parts:
            for edge in part.edges:
                t = segment_crossing(a, b, edge)
                if t is not None and (found is None or t > found):
                    found = t
        return found

    def to_geojson(self) -> dict[str, Any]:
        """The fence as a GeoJSON Feature (a Polygon, or a MultiPolygon when it has several polygons)."""
        coordinates = [[[list(position) for position in ring] for ring in rings] for rings in self.polygons]
        geometry: dict[str, Any] = (
            {"type": "Polygon", "coordinates": coordinates[0]}
            if len(coordinates) == 1
            else {"type": "MultiPolygon", "coordinates": coordinates}
        )
        return {"type": "Feature", "id": self.fence_id, "geometry": geometry, "properties": dict(self.properties)}


class CircleFence:
    """A circle: every position within `radius_m` metres (great-circle) of its centre."""

    __slots__ = ("_plane", "bbox", "center", "fence_id", "properties", "radius_m")

    def __init__(self, fence_id: str, center: Position, radius_m: float, properties: Mapping[str, Any]) -> None:
        self.fence_id = fence_id
        self.center = center
        self.radius_m = radius_m
        self.properties = {key: value for key, value in properties.items() if key != "radius_m"}
        lon, lat = center
        self.bbox = BBox(lon, lat, lon, lat).grown(radius_m)
        self._plane = LocalPlane.around(lon, lat)

    def contains(self, lon: float, lat: float) -> bool:
        """Whether the position is within the radius."""
        return haversine_m(self.center[1], self.center[0], lat, lon) <= self.radius_m

    def border_distance_m(self, lon: float, lat: float) -> float:
        """Metres from the position to the circle."""
        return abs(haversine_m(self.center[1], self.center[0], lat, lon) - self.radius_m)

    def last_crossing(self, a: Position, b: Position) -> float | None:
        """The fraction of a→b where it last crosses the circle (solved on the circle's plane)."""
        ax, ay = self._plane.xy(*a)
        bx, by = self._plane.xy(*b)
        dx, dy = bx - ax, by - ay
        qa = dx * dx + dy * dy
        qb = 2 * (ax * dx + ay * dy)
        qc = ax * ax + ay * ay - self.radius_m * self.radius_m
        discriminant = qb * qb - 4 * qa * qc
        if qa == 0 or discriminant < 0:
            return None
        root = math.sqrt(discriminant)
        roots = [t for t in ((-qb + root) / (2 * qa), (-qb - root) / (2 * qa)) if 0.0 <= t <= 1.0]
        return max(roots) if roots else None

    def to_geojson(self) -> dict[str, Any]:
        """The fence as a GeoJSON Feature: a Point with its `radius_m` property."""
        return {
            "type": "Feature",
            "id": self.fence_id,
            "geometry": {"type": "Point", "coordinates": list(self.center)},
            "properties": {**self.properties, "radius_m": self.radius_m},
        }


Fence = PolygonFence | CircleFence
