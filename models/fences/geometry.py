"""Plane geometry on (lon, lat) degrees shared by the fence modules: boxes, rings, segment crossings."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

from models.earth import degrees_lat, degrees_lon

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
