"""Device lists for `fleet devices import`: parsed strictly, with the line of the first problem named."""

from __future__ import annotations

import pytest

from broker.accounts import AccountError, DeviceSpec, read_device_csv


def test_read_device_csv_takes_id_kind_name_group_with_empty_cells_as_not_given() -> None:
    text = "id,kind,name,group\ntruck-1,truck,Truck one,north\npump-7,pump,,\n"

    assert read_device_csv(text) == [
        DeviceSpec("truck-1", "truck", "Truck one", "north"),
        DeviceSpec("pump-7", "pump", None, None),
    ]


def test_read_device_csv_needs_only_the_id_column_in_any_order() -> None:
    assert read_device_csv("group, id\nsouth, t-2\n") == [DeviceSpec("t-2", group="south")]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("name,group\nx,y\n", "must name the columns"),
        ("id,colour\nt-1,red\n", "must name the columns"),
        ("id,kind\nt-1,truck\nfleet/v1/#,truck\n", "line 3: device id"),
        ("id,kind\nt-1,truck,extra\n", "line 2: more cells than columns"),
        ("id,kind\n,truck\n", "line 2: no device id"),
    ],
)
def test_read_device_csv_names_the_first_bad_line(text: str, message: str) -> None:
    with pytest.raises(AccountError, match=message):
        read_device_csv(text)
