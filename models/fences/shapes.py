"""Fence shapes, validated and ready to test positions against: polygons (with holes, or several) and circles.

Positions are (lon, lat) in degrees, as in GeoJSON. Whether a position is inside is decided in degrees
(an even-odd ray test); how far it is from the border, in metres on the fence's own `LocalPlane`. Where a
segment between two positions crosses the border is a fraction of the segment: the plane is affine, so the
fraction is the same in degrees and in metres.

Shapes are built by `models.fences.geojson`, which validates GeoJSON first; constructing one directly
assumes valid, closed rings.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

from models.earth import LocalPlane, haversine_m
from models.fences.geometry import BBox, Position, Ring
from models.fences.polygon import PolygonPart


class PolygonFence:
    """A Polygon or MultiPolygon fence; a position is inside when it is inside any of its polygons."""

    __slots__ = ("_parts", "_plane", "bbox", "fence_id", "properties")

    def __init__(self, fence_id: str, polygons: Sequence[tuple[Ring, ...]], properties: Mapping[str, Any]) -> None:
        self.fence_id = fence_id
        self.properties = dict(properties)
        self._parts = tuple(PolygonPart(rings) for rings in polygons)
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

    @property
    def polygons(self) -> tuple[tuple[Ring, ...], ...]:
        """Each polygon's rings: the shell, then its holes."""
        return tuple(part.rings() for part in self._parts)

    def contains(self, lon: float, lat: float) -> bool:
        """Whether the position is inside (the border itself counts as either side)."""
        return any(part.contains(lon, lat) for part in self._parts)

    def near_border(self, lon: float, lat: float, metres: float) -> bool:
        """Whether a border (a shell's or a hole's) is within `metres` of the position."""
        return any(part.within(lon, lat, metres, self._plane) for part in self._parts)

    def last_crossing(self, a: Position, b: Position) -> float | None:
        """The fraction of a→b where it last crosses the border; None when it does not cross it."""
        crossings = [t for part in self._parts if (t := part.last_crossing(a, b)) is not None]
        return max(crossings, default=None)

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

    def near_border(self, lon: float, lat: float, metres: float) -> bool:
        """Whether the circle is within `metres` of the position."""
        return abs(haversine_m(self.center[1], self.center[0], lat, lon) - self.radius_m) <= metres

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
