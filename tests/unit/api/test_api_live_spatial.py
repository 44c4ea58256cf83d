"""The box index: devices followed into and out of boxes, small and large, without scanning every box."""

from __future__ import annotations

from api.live.selection import BBox
from api.live.spatial import BoxIndex

BERLIN_AREA = BBox(13.0, 52.0, 14.0, 53.0)
EUROPE = BBox(-25.0, 34.0, 45.0, 72.0)  # more cells than MAX_CELLS_PER_BOX: checked on every move


def test_box_index_routes_moves_and_readings_to_the_boxes_a_device_is_in() -> None:
    index: BoxIndex[str] = BoxIndex()
    berlin_members: set[str] = {"truck-1"}
    europe_members: set[str] = set()
    index.add("a", BERLIN_AREA, berlin_members)
    index.add("b", EUROPE, europe_members)

    assert index.route("truck-1", None) == {"a"}  # a reading: the boxes it was in at subscribe time
    assert index.route("truck-2", (13.5, 52.5)) == {"a", "b"}  # moves into both
    assert index.route("truck-1", (2.35, 48.86)) == {"a", "b"}  # leaves Berlin (a sees it go), enters Europe
    assert index.route("truck-1", None) == {"b"}
    assert index.route("truck-3", (-74.0, 40.7)) == set()  # New York: no box
    assert berlin_members == {"truck-2"}  # the owner's own sets follow
    assert europe_members == {"truck-1", "truck-2"}


def test_box_index_forgets_a_removed_box() -> None:
    index: BoxIndex[str] = BoxIndex()
    index.add("a", BERLIN_AREA, {"truck-1"})
    index.add("b", EUROPE, {"truck-1"})

    index.remove("a", BERLIN_AREA)
    index.remove("b", EUROPE)

    assert index.route("truck-1", None) == set()
    assert index.route("truck-1", (13.5, 52.5)) == set()


def test_box_index_counts_a_point_on_the_edge_as_inside() -> None:
    index: BoxIndex[str] = BoxIndex()
    index.add("a", BERLIN_AREA, set())

    assert index.route("truck-1", (14.0, 53.0)) == {"a"}
    assert index.route("truck-2", (13.0, 52.0)) == {"a"}
