"""`fleet devices|integrators|services|broker`: secrets on stdout once, changes stored in the database, and a
failing status unless the broker agents applied them."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from broker.accounts import Credential
from broker.agent import AgentConfig, BrokerAgent
from broker.passwords import verify_secret
from cli.main import run
from tests.integration.broker.conftest import SUCCESS, TIMEOUT_S, AccountBroker, Probe, wait_for

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


def test_devices_add_without_a_broker_agent_stores_the_device_and_says_it_is_not_in_effect(
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

    assert code == 3, err
    secret = out.strip()
    assert verify_secret(secret, _hash(database_url, "t-1") or "")
    assert "NOT in effect: no broker agent is running" in err
    assert "fleet broker agent" in err
    assert not (tmp_path / "accounts").exists()  # the command writes no broker files: the agents own them
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


@pytest.fixture
def agent(database_url: str, account_broker: AccountBroker) -> Iterator[BrokerAgent]:
    """The module broker's agent, for this test's database."""
    running = BrokerAgent(
        AgentConfig(database_url, account_broker.accounts_dir, broker_pid=account_broker.pid, name="cli-agent")
    ).start()
    wait_for(lambda: running.applied_revision is not None, "the agent's first resync")
    yield running
    running.stop()


def test_integrators_add_waits_until_the_broker_agent_applied_it(
    capsys: pytest.CaptureFixture[str], database_url: str, account_broker: AccountBroker, agent: BrokerAgent
) -> None:
    code, out, err = _fleet(capsys, "integrators", "add", "acme", "--database-url", database_url)

    assert code == 0, err
    assert "in effect on 1 broker(s) (agents: cli-agent)" in err
    probe = Probe(account_broker.server.port, Credential("acme", out.strip()))
    try:
        assert probe.connect() == SUCCESS
    finally:
        probe.close()


def test_broker_reload_has_the_agent_reload_its_broker(
    capsys: pytest.CaptureFixture[str], database_url: str, account_broker: AccountBroker, agent: BrokerAgent
) -> None:
    before = account_broker.reloads()

    code, _, err = _fleet(capsys, "broker", "reload", "--database-url", database_url)

    assert code == 0, err
    assert "agents: cli-agent" in err
    wait_for(lambda: account_broker.reloads() > before, "the broker to log its reload")


def test_a_change_an_agent_could_not_apply_is_reported_with_a_failing_status(
    capsys: pytest.CaptureFixture[str], database_url: str, tmp_path: Path
) -> None:
    # The agent's pid is not a Mosquitto: it refuses to signal it, so it never acknowledges the change.
    refusing = BrokerAgent(AgentConfig(database_url, tmp_path / "accounts", broker_pid=os.getpid(), name="stuck"))
    refusing.start()
    try:
        wait_for(
            lambda: _agent_seen(database_url, "stuck"),
            "the agent to record itself",
        )
        code, _, err = _fleet(capsys, "broker", "reload", "--database-url", database_url)
    finally:
        refusing.stop()

    assert code == 3
    assert "NOT yet applied by stuck" in err


def _agent_seen(database_url: str, name: str) -> bool:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT 1 FROM mqtt_broker_agents WHERE name = %s", (name,)).fetchone() is not None


def test_fleet_broker_agent_applies_changes_to_the_broker_in_its_pid_file_until_stopped(
    capsys: pytest.CaptureFixture[str], database_url: str, account_broker: AccountBroker, tmp_path: Path
) -> None:
    pid_file = tmp_path / "mosquitto.pid"
    pid_file.write_text(f"{account_broker.pid}\n")
    command = [sys.executable, "-m", "cli", "broker", "agent", "--database-url", database_url]
    command += ["--accounts-dir", str(account_broker.accounts_dir), "--pid-file", str(pid_file), "--name", "cmd"]
    agent = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        wait_for(lambda: _agent_seen(database_url, "cmd"), "the agent to record itself")
        code, out, err = _fleet(capsys, "devices", "add", "t-cmd", "--database-url", database_url)
        assert code == 0, err
        probe = Probe(account_broker.server.port, Credential("t-cmd", out.strip()))
        try:
            assert probe.connect() == SUCCESS
        finally:
            probe.close()
    finally:
        agent.send_signal(signal.SIGTERM)
        _, log = agent.communicate(timeout=TIMEOUT_S)

    assert agent.returncode == 0, log
    assert f"mosquitto pid {account_broker.pid} signalled" in log
    assert not _agent_seen(database_url, "cmd"), "a stopped agent takes itself off the list"
