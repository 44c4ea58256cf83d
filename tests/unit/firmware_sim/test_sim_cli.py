"""The simulator's command line, where it needs no broker: arguments, defaults and early errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from config.settings import SimSettings
from firmware_sim.cli import build_parser, main


def test_cli_takes_its_defaults_from_settings() -> None:
    args = build_parser(SimSettings(devices=3, rate_hz=2.5, seed=11), "mqtt://example:1884").parse_args([])
    assert (args.url, args.devices, args.rate, args.seed, args.batch, args.prefix) == (
        "mqtt://example:1884",
        3,
        2.5,
        11,
        1,
        "truck-",
    )


def test_cli_parses_every_documented_flag() -> None:
    argv = "--url mqtts://u:p@h:8884 --devices 100 --rate 0 --duration 10 --count 5 --batch 20 --prefix van- --seed 3"
    args = build_parser(SimSettings()).parse_args([*argv.split(), "--replay", "trip.json", "--speed", "4"])
    assert (args.devices, args.rate, args.duration, args.count, args.batch, args.prefix) == (
        100,
        0.0,
        10.0,
        5,
        20,
        "van-",
    )
    assert (args.replay, args.speed, args.seed) == (Path("trip.json"), 4.0, 3)
    store = ["--store-dir", "/var/lib/sim", "--store-max-samples", "500", "--persist-timeout", "2.5"]
    args = build_parser(SimSettings()).parse_args(store)
    assert (args.store_dir, args.store_max_samples, args.persist_timeout) == (Path("/var/lib/sim"), 500, 2.5)


def test_cli_parses_the_gateway_flags() -> None:
    argv = "--gateway --site quarry --link-kbps 250 --sensors-per-kind 3"
    args = build_parser(SimSettings()).parse_args(argv.split())
    assert (args.gateway, args.site, args.link_kbps, args.sensors_per_kind) == (True, "quarry", 250.0, 3)


def test_cli_keeps_stores_in_memory_unless_given_a_directory() -> None:
    args = build_parser(SimSettings()).parse_args([])
    assert (args.store_dir, args.store_max_samples, args.persist_timeout) == (None, 100_000, 10.0)


@pytest.mark.parametrize(
    "argv",
    [
        ["--rate", "-1"],
        ["--batch", "0"],
        ["--devices", "x"],
        ["--url", "http://h"],
        ["--store-max-samples", "0"],
        ["--persist-timeout", "0"],
        ["--gateway"],
        ["--site", "quarry"],
        ["--link-kbps", "100"],
        ["--gateway", "--site", "quarry", "--link-kbps", "0"],
        ["--gateway", "--site", "quarry", "--demo"],
        ["--gateway", "--site", "quarry", "--sensors-per-kind", "0"],
    ],
)
def test_cli_refuses_bad_arguments_with_status_2(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert "error" in capsys.readouterr().err


def test_cli_reports_an_unreadable_recording(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["--url", "mqtt://127.0.0.1:1", "--replay", str(tmp_path / "none.json")]) == 1
    assert "none.json" in capsys.readouterr().err


def test_cli_without_url_or_target_refuses_instead_of_guessing_a_broker(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--devices", "1", "--count", "1"])
    assert exc.value.code == 2
    assert "no broker to publish to: pass --url" in capsys.readouterr().err
