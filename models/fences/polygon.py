"""One polygon of a fence (a shell and its holes) laid out for fast tests: edges bucketed by latitude.

A position's latitude picks one slab, and only the few edges crossing that slab are tested: the ray
test and the "within so many metres of the border" test cost about the same for a 20-vertex polygon as
for a 10,000-vertex one. Vertices are kept in flat `array('d')`s (8 bytes a coordinate), not tuples of
float objects (24 bytes each and a pointer): 10,000 fences of ~90 vertices are ~900,000 vertices.

Holes are validated to lie inside their shell without crossing it or each other, so the even-odd rule
over all rings at once is "inside the shell and outside every hole".
"""

from __future__ import annotations

import math
from array import array
from typing import Final

from models.earth import LocalPlane, degrees_lat, degrees_lon
from models.fences.geometry import BBox, Position, Ring, segment_crossing

EDGES_PER_SLAB: Final = 2
MAX_SLABS: Final = 1024


class PolygonPart:
    """A shell and its holes: vertices in flat arrays, edges listed per latitude slab."""

    __slots__ = ("_count", "_dlon_per_m", "_height", "_slabs", "_xs", "_y0", "_ys", "bbox", "ring_ends")

    def __init__(self, rings: tuple[Ring, ...]) -> None:
        self._xs = array("d", (lon for ring in rings for lon, _ in ring))
        self._ys = array("d", (lat for ring in rings for _, lat in ring))
        ends, edges, total = [], array("i"), 0
        for ring in rings:
            edges.extend(range(total, total + len(ring) - 1))  # edge i joins vertex i and i + 1
            total += len(ring)
            ends.append(total)
        self.ring_ends = tuple(ends)
        shell = len(rings[0])
        self.bbox = BBox(min(self._xs[:shell]), min(self._ys[:shell]), max(self._xs[:shell]), max(self._ys[:shell]))
        self._dlon_per_m = degrees_lon(1.0, max(abs(self.bbox.min_lat), abs(self.bbox.max_lat)))
        self._y0 = self.bbox.min_lat
        self._count = max(1, min(len(edges) // EDGES_PER_SLAB, MAX_SLABS))
        self._height = (self.bbox.max_lat - self.bbox.min_lat) / self._count or 1.0
        slabs: list[array[int]] = [array("i") for _ in range(self._count)]
        ys, y0, height, last = self._ys, self._y0, self._height, self._count - 1
        for i in edges:
            low, high = ys[i], ys[i + 1]
            if low > high:
                low, high = high, low
            # Every vertex is within the shell's box, so these are within 0..last but for rounding at the top.
            for k in range(min(last, int((low - y0) / height)), min(last, int((high - y0) / height)) + 1):
                slabs[k].append(i)
        self._slabs = tuple(slabs)

    def _slab(self, lat: float) -> int:
        return max(0, min(self._count - 1, int((lat - self._y0) / self._height)))

    def rings(self) -> tuple[Ring, ...]:
        """The rings as given (after validation): the shell, then the holes."""
        starts = (0, *self.ring_ends[:-1])
        return tuple(
            tuple(zip(self._xs[start:end], self._ys[start:end], strict=True))
            for start, end in zip(starts, self.ring_ends, strict=True)
        )

    def contains(self, lon: float, lat: float) -> bool:
        """Even-odd ray test over the edges of the position's slab."""
        if not self.bbox.contains(lon, lat):
            return False
        xs, ys = self._xs, self._ys
        inside = False
        for i in self._slabs[self._slab(lat)]:
            y1, y2 = ys[i], ys[i + 1]
            if (y1 > lat) != (y2 > lat):
                x1 = xs[i]
                if lon < (xs[i + 1] - x1) * (lat - y1) / (y2 - y1) + x1:
                    inside = not inside
        return inside

    def _edges_near(self, low_lat: float, high_lat: float) -> set[int]:
        if high_lat < self._y0 or low_lat > self.bbox.max_lat:
            return set()
        return {i for k in range(self._slab(low_lat), self._slab(high_lat) + 1) for i in self._slabs[k]}

    def within(self, lon: float, lat: float, metres: float, plane: LocalPlane) -> bool:
        """Whether a border of this polygon is within `metres` of the position (measured on `plane`)."""
        dlat, dlon = degrees_lat(metres), self._dlon_per_m * metres
        xs, ys = self._xs, self._ys
        px, py = plane.xy(lon, lat)
        for i in self._edges_near(lat - dlat, lat + dlat):
            x1, x2, y1, y2 = xs[i], xs[i + 1], ys[i], ys[i + 1]
            if (
                lon < min(x1, x2) - dlon
                or lon > max(x1, x2) + dlon
                or lat < min(y1, y2) - dlat
                or lat > max(y1, y2) + dlat
            ):
                continue
            ax, ay = plane.xy(x1, y1)
            bx, by = plane.xy(x2, y2)
            dx, dy = bx - ax, by - ay
            length2 = dx * dx + dy * dy
            t = 0.0 if length2 == 0 else max(0.0, min(1.0, ((px - ax) * dx + (py - ay) * dy) / length2))
            if math.hypot(px - (ax + t * dx), py - (ay + t * dy)) <= metres:
                return True
        return False

    def last_crossing(self, a: Position, b: Position) -> float | None:
        """The largest fraction of a→b at which it meets an edge of this polygon."""
        xs, ys = self._xs, self._ys
        found = None
        for i in self._edges_near(min(a[1], b[1]), max(a[1], b[1])):
            t = segment_crossing(a, b, (xs[i], ys[i], xs[i + 1], ys[i + 1]))
            if t is not None and (found is None or t > found):
                found = t
        return found
