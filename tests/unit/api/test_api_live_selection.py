"""Cursors as the stream orders them, and the rules of live selections."""

from __future__ import annotations

from datetime import UTC, datetime

from api.live.cursor import StreamId, parse_cursor
from api.live.selection import BBox, Selection, bbox_problem
from api.live.update import LiveUpdate
from models.state import DeviceState, FieldValue, PositionState

TS = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def test_cursor_parses_entry_ids_and_refuses_anything_else() -> None:
    assert parse_cursor("1795629932192-7") == StreamId(1795629932192, 7)
    assert parse_cursor("9-99") == StreamId(9, 99) < StreamId(10, 0)
    for bad in ("", "12", "-1-0", "1-", "a-b", "1-0 ", "1-0\n", "1-0-0", "99999999999999999999999-0"):
        assert parse_cursor(bad) is None, bad


def test_cursor_previous_is_the_greatest_id_below() -> None:
    assert StreamId(10, 3).previous() == StreamId(10, 2)
    assert StreamId(10, 0).previous() == StreamId(9, 2**64 - 1)
    assert str(StreamId(10, 0).previous()) == "9-18446744073709551615"


def test_bbox_problems_are_named() -> None:
    assert bbox_problem([13.0, 52.0, 14.0, 53.0]) is None
    assert bbox_problem([1.0, 2.0, 3.0]) == "bbox takes four numbers: min_lon,min_lat,max_lon,max_lat"
    assert "within" in (bbox_problem([13.0, 52.0, 14.0, 91.0]) or "")
    assert "antimeridian" in (bbox_problem([170.0, 0.0, -170.0, 1.0]) or "")


def test_stateless_match_uses_the_updates_position_else_the_current_one() -> None:
    box = Selection(boxes={BBox(13.0, 52.0, 14.0, 53.0): set()})
    fuel = LiveUpdate("t", DeviceState("t", TS, metrics={"fuel": FieldValue(1.0, TS, 1)}), "1-0")
    moved_in = LiveUpdate("t", DeviceState("t", TS, position=PositionState(52.5, 13.5, TS, 2)), "2-0")
    late_in = LiveUpdate("t", DeviceState("t", TS, position=PositionState(52.5, 13.5, TS, 2)), "3-0", "correction")

    assert box.matches(fuel, None, (13.5, 52.5))
    assert not box.matches(fuel, None, (2.35, 48.86))
    assert not box.matches(fuel, None, None)
    assert box.matches(moved_in, None, (2.35, 48.86))  # its own position decides
    assert not box.matches(late_in, None, (2.35, 48.86))  # a correction does not move the device
    assert Selection(groups={"north"}).matches(fuel, "north", None)
    assert not Selection(groups={"north"}).matches(fuel, "south", None)
