"""Per-device secrets for the simulator, in the `id,secret` form `fleet devices import` prints."""

from __future__ import annotations

from pathlib import Path

import pytest

from firmware_sim.address import parse_broker_url
from firmware_sim.cli import read_credentials
from firmware_sim.errors import SimError
from firmware_sim.fleet import Fleet, FleetOptions


def test_read_credentials_takes_id_secret_lines_with_or_without_a_header(tmp_path: Path) -> None:
    path = tmp_path / "secrets.csv"
    path.write_text("id,secret\ntruck-0001,s3cr,et\n\ntruck-0002,other\n")
    assert read_credentials(path) == {"truck-0001": "s3cr,et", "truck-0002": "other"}


def test_read_credentials_names_the_bad_line(tmp_path: Path) -> None:
    path = tmp_path / "secrets.csv"
    path.write_text("truck-0001,ok\ntruck-0002\n")
    with pytest.raises(SimError, match=r"secrets.csv:2: expected `id,secret`"):
        read_credentials(path)


def test_fleet_gives_each_device_its_own_secret() -> None:
    options = FleetOptions(devices=2, credentials={"truck-0001": "one"})
    fleet = Fleet(parse_broker_url("mqtt://127.0.0.1:1"), options)
    try:
        passwords = {d.device_id: d.options.password for d in fleet.devices}
    finally:
        fleet.close()
    assert passwords == {"truck-0001": "one", "truck-0002": None}
