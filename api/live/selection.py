"""What a live client asked for: named devices, groups, boxes of the map, or everything.

A `Selection` decides per update whether it matches, given the device's group (from the
`GroupDirectory`) and, for boxes, its position. The same rules serve the WebSocket (whose hub tracks which
devices are inside each box as positions stream by, `api.live.spatial`) and the polling route and resume replays (which
are stateless: an update matches a box when its own position is inside, or, without one, the device's
current position is).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import NamedTuple

from api.live.update import LiveUpdate
from models.state import LIVE_KIND_STATE


class BBox(NamedTuple):
    """A box of the map in degrees; `min_lon <= max_lon` (a box across the antimeridian is two boxes)."""

    min_lon: float
    min_lat: float
    max_lon: float
    max_lat: float

    def contains(self, lon: float, lat: float) -> bool:
        """True when the point is inside or on the edge."""
        return self.min_lon <= lon <= self.max_lon and self.min_lat <= lat <= self.max_lat


def bbox_problem(values: list[float]) -> str | None:
    """Why four numbers are not a box, or None."""
    if len(values) != 4:
        return "bbox takes four numbers: min_lon,min_lat,max_lon,max_lat"
    min_lon, min_lat, max_lon, max_lat = values
    if not (-180 <= min_lon <= 180 and -180 <= max_lon <= 180 and -90 <= min_lat <= 90 and -90 <= max_lat <= 90):
        return "bbox longitudes must be within -180…180 and latitudes within -90…90"
    if min_lon > max_lon or min_lat > max_lat:
        return "bbox minimum above its maximum (to cross the antimeridian, subscribe to two boxes)"
    return None


def moved_to(update: LiveUpdate) -> tuple[float, float] | None:
    """(lon, lat) when `update` changes the device's position (a correction never does)."""
    position = update.changes.position
    if update.kind != LIVE_KIND_STATE or position is None:
        return None
    return position.lon, position.lat


GroupOf = Callable[[str], str | None]


@dataclass(slots=True)
class Selection:
    """The subscriptions of one client. `boxes` maps each box to the devices now inside it (kept current by
    the hub's `BoxIndex` while the client is attached)."""

    everything: bool = False
    devices: set[str] = field(default_factory=set)
    groups: set[str] = field(default_factory=set)
    boxes: dict[BBox, set[str]] = field(default_factory=dict)

    def copy(self) -> Selection:
        """An independent copy (the boxes' member sets included)."""
        return Selection(
            self.everything, set(self.devices), set(self.groups), {box: set(m) for box, m in self.boxes.items()}
        )

    @property
    def empty(self) -> bool:
        """Nothing subscribed."""
        return not (self.everything or self.devices or self.groups or self.boxes)

    def covers(self, device_id: str, group: str | None) -> bool:
        """True when updates of `device_id` are wanted now (boxes: while it is inside one)."""
        return (
            self.everything
            or device_id in self.devices
            or (group is not None and group in self.groups)
            or any(device_id in members for members in self.boxes.values())
        )

    def matches(self, update: LiveUpdate, group: str | None, current: tuple[float, float] | None) -> bool:
        """Stateless match: the update's own position (else `current`, the device's) decides boxes."""
        return self.matches_device(update.device_id, group, moved_to(update) or current)

    def matches_device(self, device_id: str, group: str | None, where: tuple[float, float] | None) -> bool:
        """Stateless match of a device at `where` (its position, if known), for a device event or an update."""
        if self.everything or device_id in self.devices or (group is not None and group in self.groups):
            return True
        return where is not None and any(box.contains(*where) for box in self.boxes)
