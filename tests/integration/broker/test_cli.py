"""`fleet devices|integrators|services|broker`: secrets on stdout once, files written, the broker reloaded."""

from __future__ import annotations

import os
from pathlib import Path

import psycopg
import pytest

from broker.accounts import Credential
from broker.passwords import verify_secret
from cli.main import run
from tests.integration.broker.conftest import SUCCESS, AccountBroker, Probe, wait_for

pytestmark = pytest.mark.integration


def _fleet(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = run(list(argv), {})
    out, err = capsys.readouterr()
    return code, out, err


def _hash(database_url: str, username: str) -> str | None:
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT secret_hash FROM mqtt_accounts WHERE username = %s", (username,)).fetchone()
    assert row is not None
    return None if row[0] is None else str(row[0])


def test_devices_add_prints_the_secret_alone_and_writes_the_files(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path
) -> None:
    code, out, err = _fleet(
        capsys,
        "devices",
        "add",
        "t-1",
        "--group",
        "north",
        "--database-url",
        database_url,
        "--state-dir",
        str(tmp_path),
    )

    assert code == 0, err
    secret = out.strip()
    assert verify_secret(secret, _hash(database_url, "t-1") or "")
    assert (tmp_path / "accounts" / "passwords").read_text().startswith("t-1:$7$")
    assert "no running mosquitto reads them" in err
    assert secret not in err


def test_devices_import_prints_id_secret_lines(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path
) -> None:
    devices = tmp_path / "devices.csv"
    devices.write_text("id,kind,name,group\nt-1,truck,One,north\nt-2,pump,,south\n")

    code, out, err = _fleet(capsys, "devices", "import", str(devices), "--database-url", database_url, "--no-reload")

    assert code == 0, err
    lines = dict(line.split(",") for line in out.splitlines())
    assert sorted(lines) == ["t-1", "t-2"]
    for username, secret in lines.items():
        assert verify_secret(secret, _hash(database_url, username) or "")


def test_rotate_revoke_and_refusals_report_on_stderr_with_a_failing_status(
    capsys: pytest.CaptureFixture[str], database_url: str
) -> None:
    common = ("--database-url", database_url, "--no-reload")
    assert _fleet(capsys, "services", "add", "bridge", "fleetbridge-bridge", *common)[0] == 0

    code, _, err = _fleet(capsys, "devices", "add", "fleetbridge-bridge", *common)
    assert (code, "taken (bridge account)" in err) == (1, True)
    code, _, err = _fleet(capsys, "devices", "rotate", "fleetbridge-bridge", *common)
    assert (code, "no device account" in err) == (1, True)

    code, out, _ = _fleet(capsys, "services", "rotate", "fleetbridge-bridge", *common)
    assert code == 0
    assert verify_secret(out.strip(), _hash(database_url, "fleetbridge-bridge") or "")
    assert _fleet(capsys, "services", "revoke", "fleetbridge-bridge", *common)[0] == 0
    assert _hash(database_url, "fleetbridge-bridge") is None


def test_cli_without_a_database_says_how_to_name_one(capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = _fleet(capsys, "devices", "revoke", "t-1")

    assert code == 2
    assert "FLEETBRIDGE_DATABASE_URL" in err


def test_integrators_add_reloads_the_broker_named_by_pid(
    capsys: pytest.CaptureFixture[str], database_url: str, account_broker: AccountBroker
) -> None:
    before = account_broker.reloads()

    code, out, err = _fleet(
        capsys,
        "integrators",
        "add",
        "acme",
        "--database-url",
        database_url,
        "--accounts-dir",
        str(account_broker.accounts_dir),
        "--broker-pid",
        str(account_broker.pid),
    )

    assert code == 0, err
    assert f"reloaded mosquitto (pid {account_broker.pid})" in err
    wait_for(lambda: account_broker.reloads() > before, "the reload")
    probe = Probe(account_broker.server.port, Credential("acme", out.strip()))
    try:
        assert probe.connect() == SUCCESS
    finally:
        probe.close()


def test_broker_reload_finds_the_broker_reading_the_files(
    capsys: pytest.CaptureFixture[str], database_url: str, account_broker: AccountBroker
) -> None:
    code, _, err = _fleet(
        capsys, "broker", "reload", "--database-url", database_url, "--accounts-dir", str(account_broker.accounts_dir)
    )

    assert code == 0, err
    assert f"reloaded mosquitto (pid {account_broker.pid})" in err


def test_reload_refuses_to_signal_a_process_that_is_not_mosquitto(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path
) -> None:
    code, _, err = _fleet(
        capsys,
        "broker",
        "reload",
        "--database-url",
        database_url,
        "--accounts-dir",
        str(tmp_path),
        "--broker-pid",
        str(os.getpid()),
    )

    assert code == 1
    assert "not a running mosquitto" in err
