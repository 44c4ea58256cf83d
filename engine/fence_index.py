"""Which fences might hold a position: a uniform grid over the fences' boxes, each grown by the tolerance.

The cell is as large as the median fence (its box's longer side), so a typical fence lists in up to
four cells and a cell holds about as many fences as overlap there.

A position is looked up in one cell and tested against the few fences listed there, instead of against
every fence. Fences too large for the grid (more than `MAX_CELLS_PER_FENCE` cells) are kept in a short
list that every look-up checks by box. bench/geofence.py measures it against scanning every fence.
"""

from __future__ import annotations

import math
from collections import defaultdict
from collections.abc import Iterable
from typing import Final

from models.fences.shapes import Fence

DEFAULT_CELL_DEG: Final = 0.05  # about 5.5 km north-south, when there are no fences to size it by
MIN_CELL_DEG: Final = 0.002  # about 220 m
MAX_CELL_DEG: Final = 1.0
MAX_CELLS_PER_FENCE: Final = 400

_Entry = tuple[float, float, float, float, Fence]


class FenceIndex:
    """The fences of one evaluation, indexed by grown box; `tolerance_m` is the hysteresis band they use."""

    def __init__(self, fences: Iterable[Fence], tolerance_m: float, cell_deg: float | None = None) -> None:
        self.tolerance_m = tolerance_m
        self._fences = {fence.fence_id: fence for fence in fences}
        boxes = {fence_id: fence.bbox.grown(tolerance_m) for fence_id, fence in self._fences.items()}
        sides = sorted(max(box.max_lon - box.min_lon, box.max_lat - box.min_lat) for box in boxes.values())
        # About the size of a typical fence: each lists in a few cells, and a cell holds few fences.
        median = sides[len(sides) // 2] if sides else DEFAULT_CELL_DEG
        self._cell_deg = cell_deg or min(MAX_CELL_DEG, max(MIN_CELL_DEG, median))
        self._cells: defaultdict[tuple[int, int], list[_Entry]] = defaultdict(list)
        self._large: list[_Entry] = []
        for fence_id, box in boxes.items():
            entry = (box.min_lon, box.min_lat, box.max_lon, box.max_lat, self._fences[fence_id])
            x0, y0, x1, y1 = self._cell(box.min_lon, box.min_lat) + self._cell(box.max_lon, box.max_lat)
            if (x1 - x0 + 1) * (y1 - y0 + 1) > MAX_CELLS_PER_FENCE:
                self._large.append(entry)
                continue
            for x in range(x0, x1 + 1):
                for y in range(y0, y1 + 1):
                    self._cells[x, y].append(entry)

    def _cell(self, lon: float, lat: float) -> tuple[int, int]:
        return math.floor(lon / self._cell_deg), math.floor(lat / self._cell_deg)

    def __len__(self) -> int:
        return len(self._fences)

    def get(self, fence_id: str) -> Fence | None:
        """The fence with this id, if it is in the index."""
        return self._fences.get(fence_id)

    def near(self, lon: float, lat: float) -> dict[str, Fence]:
        """The fences whose box, grown by the tolerance, holds the position (by fence id)."""
        found: dict[str, Fence] = {}
        for entries in (self._cells.get(self._cell(lon, lat), ()), self._large):
            for min_lon, min_lat, max_lon, max_lat, fence in entries:
                if min_lon <= lon <= max_lon and min_lat <= lat <= max_lat:
                    found[fence.fence_id] = fence
        return found
