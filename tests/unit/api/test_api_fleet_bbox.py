"""Parsing `bbox` and the GEOSEARCH box that covers it (the coverage itself is checked against a real
Redis in tests/integration/api/test_api_fleet_state.py)."""

from __future__ import annotations

import math

import pytest

from api.fleet.bbox import EARTH_RADIUS_M, BoundingBox, BoxError, covering_search


def test_bbox_parses_four_numbers_in_order() -> None:
    assert BoundingBox.parse("13.0,52.0,14.5,52.75") == BoundingBox(13.0, 52.0, 14.5, 52.75)


@pytest.mark.parametrize(
    "text",
    ["", "1,2,3", "1,2,3,4,5", "a,2,3,4", "nan,0,1,1", "0,0,inf,1", "-181,0,0,1", "0,-91,1,1", "0,2,1,1", "10,0,-10,1"],
)
def test_bbox_refuses_malformed_or_out_of_range_boxes(text: str) -> None:
    with pytest.raises(BoxError):
        BoundingBox.parse(text)


def test_bbox_contains_its_edges_only() -> None:
    box = BoundingBox(10.0, 50.0, 11.0, 51.0)

    assert box.contains(10.0, 50.0)
    assert box.contains(11.0, 51.0)
    assert not box.contains(11.000001, 50.5)
    assert not box.contains(10.5, 49.999999)


def test_covering_width_is_measured_on_the_parallel_nearest_the_equator() -> None:
    north = covering_search(BoundingBox(0.0, 60.0, 2.0, 70.0))
    across = covering_search(BoundingBox(0.0, -10.0, 2.0, 10.0))
    assert north is not None
    assert across is not None

    # 2° of longitude at 60° N is half as long as at the equator.
    equator_width = EARTH_RADIUS_M * math.radians(2.0)
    assert across.width_m == pytest.approx(equator_width, rel=0.01)
    assert north.width_m == pytest.approx(equator_width / 2, rel=0.01)
    assert north.height_m == pytest.approx(EARTH_RADIUS_M * math.radians(10.0), rel=0.01)
    assert (north.lon, north.lat) == (1.0, 65.0)


def test_covering_search_is_none_beyond_the_latitudes_redis_indexes() -> None:
    assert covering_search(BoundingBox(0.0, 86.0, 10.0, 90.0)) is None
    polar = covering_search(BoundingBox(0.0, 80.0, 10.0, 90.0))
    assert polar is not None
    assert polar.lat == pytest.approx((80.0 + 85.05112878) / 2)
