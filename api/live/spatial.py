"""Which boxes of the map each device is inside, kept as positions stream by, found without a scan.

Every connection may follow boxes; checking each box for each update costs connections × updates. A
grid of one-degree cells maps a point to the few boxes that can contain it, and a reverse index maps a
device to the boxes it is inside now, so an update visits only the boxes it concerns. Boxes spanning
more than `MAX_CELLS_PER_BOX` cells (a continent) are few and checked on every move instead.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterator
from typing import Final, Generic, TypeVar

from api.live.selection import BBox

CELL_DEG: Final = 1.0
MAX_CELLS_PER_BOX: Final = 400

Owner = TypeVar("Owner", bound=Hashable)


def _cell(lon: float, lat: float) -> tuple[int, int]:
    return math.floor(lon / CELL_DEG), math.floor(lat / CELL_DEG)


def _cells(box: BBox) -> Iterator[tuple[int, int]]:
    (x0, y0), (x1, y1) = _cell(box.min_lon, box.min_lat), _cell(box.max_lon, box.max_lat)
    for x in range(x0, x1 + 1):
        for y in range(y0, y1 + 1):
            yield x, y


def _cell_count(box: BBox) -> int:
    (x0, y0), (x1, y1) = _cell(box.min_lon, box.min_lat), _cell(box.max_lon, box.max_lat)
    return (x1 - x0 + 1) * (y1 - y0 + 1)


class BoxIndex(Generic[Owner]):
    """Boxes of many owners (connections), and the devices inside each.

    The member set given to `add` is kept and updated in place: the owner's own view of its box
    (`Selection.boxes`) stays the same object.
    """

    def __init__(self) -> None:
        self._cells: dict[tuple[int, int], set[tuple[Owner, BBox]]] = {}
        self._large: set[tuple[Owner, BBox]] = set()
        self._members: dict[tuple[Owner, BBox], set[str]] = {}
        self._inside: dict[str, set[tuple[Owner, BBox]]] = {}

    def add(self, owner: Owner, box: BBox, members: set[str]) -> None:
        """Follow `box` for `owner`, starting with `members` inside it."""
        key = (owner, box)
        self._members[key] = members
        for device_id in members:
            self._inside.setdefault(device_id, set()).add(key)
        if _cell_count(box) > MAX_CELLS_PER_BOX:
            self._large.add(key)
        else:
            for cell in _cells(box):
                self._cells.setdefault(cell, set()).add(key)

    def remove(self, owner: Owner, box: BBox) -> None:
        """Stop following `box` for `owner`."""
        key = (owner, box)
        for device_id in self._members.pop(key, set()):
            inside = self._inside.get(device_id)
            if inside is not None:
                inside.discard(key)
                if not inside:
                    del self._inside[device_id]
        if key in self._large:
            self._large.discard(key)
            return
        for cell in _cells(box):
            keys = self._cells.get(cell)
            if keys is not None:
                keys.discard(key)
                if not keys:
                    del self._cells[cell]

    def route(self, device_id: str, moved_to: tuple[float, float] | None) -> set[Owner]:
        """The owners of the boxes the device is in, or was in before this move (so they see it leave).

        `moved_to` is (lon, lat) when the update changes the device's position; membership follows it.
        """
        if not self._members:
            return set()  # the common case of an instance whose clients follow no box
        was = self._inside.get(device_id, set())
        owners = {owner for owner, _ in was}
        if moved_to is None:
            return owners
        lon, lat = moved_to
        candidates = self._cells.get(_cell(lon, lat), set()) | self._large
        now = {key for key in candidates if key[1].contains(lon, lat)}
        for key in was - now:
            self._members[key].discard(device_id)
        for key in now - was:
            self._members[key].add(device_id)
        if now:
            self._inside[device_id] = now
        else:
            self._inside.pop(device_id, None)
        owners.update(owner for owner, _ in now)
        return owners
