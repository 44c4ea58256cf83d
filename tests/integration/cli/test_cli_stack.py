"""The `fleet` commands find the local stack they run beside through `.fleet/stack.json`, with no variables.

The state file here points at the session's servers (what `fleet up` would have started) and names this
test process as its owner, so it counts as running; a file whose owner is gone counts as no stack. Its
broker is a Mosquitto with accounts and the agent that keeps that broker's files, as `fleet up` runs them.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest

from api.accounts.keys import SHOWN_PREFIX_CHARS
from broker.accounts import AccountFiles
from broker.acl import render_acl
from broker.agent import AgentConfig, BrokerAgent
from broker.passwords import verify_secret
from broker.process import start_mosquitto
from broker.reload import write_files
from cli.main import run
from models.topics import TopicKind, device_topic
from stack.identity import ProcessIdentity
from stack.state import StackState, write_state
from tests.integration.firmware_sim.sim_mqtt import RawSubscriber

pytestmark = pytest.mark.integration


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    return tmp_path / "state"


AGENT_START_S = 10.0


@pytest.fixture
def stack(
    state_dir: Path, database_url: str, mqtt_url: str, redis_url: str, tmp_path: Path, servers_dir: Path
) -> Iterator[StackState]:
    """A running stack's state file, on the session's servers, and a broker with accounts whose files a
    broker agent keeps in a folder of their own."""
    # Under the servers' folder: the broker's own user must be able to read the files.
    accounts_dir = servers_dir / f"accounts-cli-{tmp_path.name}"
    paths = write_files(accounts_dir, AccountFiles("", render_acl([])))
    with start_mosquitto(
        servers_dir / f"mosquitto-cli-{tmp_path.name}",
        anonymous=False,
        password_file=paths.passwords,
        acl_file=paths.acl,
    ) as broker:
        assert broker.pid is not None
        agent = BrokerAgent(AgentConfig(database_url, accounts_dir, broker_pid=broker.pid)).start()
        deadline = time.monotonic() + AGENT_START_S
        while agent.applied_revision is None:
            assert time.monotonic() < deadline, "the broker agent made no first resync"
            time.sleep(0.05)
        try:
            yield _stack_state(state_dir, database_url, mqtt_url, redis_url, tmp_path, accounts_dir)
        finally:
            agent.stop()


def _stack_state(
    state_dir: Path, database_url: str, mqtt_url: str, redis_url: str, tmp_path: Path, accounts_dir: Path
) -> StackState:
    secrets_file = tmp_path / "device-secrets.csv"
    secrets_file.write_text("id,secret\n")
    state = StackState(
        owner=ProcessIdentity.current(),
        urls={
            "ui": "http://127.0.0.1:1/",
            "api": "http://127.0.0.1:1/api/v1/devices",
            "mqtt": mqtt_url,
            "redis": redis_url,
            "database": database_url,
            "logs": str(tmp_path / "logs"),
        },
        accounts_dir=accounts_dir,
        device_secrets=secrets_file,
        sim_url=mqtt_url,
    )
    state_dir.mkdir()
    write_state(state_dir, state)
    return state


def _fleet(capsys: pytest.CaptureFixture[str], state_dir: Path, *argv: str) -> tuple[int, str, str]:
    # No FLEETBRIDGE_DATABASE_URL, no FLEETBRIDGE_MQTT_URL: only where the stack's state folder is.
    code = run(list(argv), {"FLEETBRIDGE_STACK_STATE_DIR": str(state_dir)})
    out, err = capsys.readouterr()
    return code, out, err


def test_devices_add_and_list_use_the_running_stacks_database_and_broker_files(
    stack: StackState, state_dir: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _fleet(capsys, state_dir, "devices", "add", "truck-42", "--group", "north")

    assert code == 0, err
    secret = out.strip()
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT secret_hash FROM mqtt_accounts WHERE username = 'truck-42'").fetchone()
    assert row is not None
    assert verify_secret(secret, row[0])
    assert stack.accounts_dir is not None
    assert (stack.accounts_dir / "passwords").read_text().startswith("truck-42:$7$")
    assert not (state_dir / "accounts").exists()  # not the default folder: the stack's broker reads the other

    code, out, err = _fleet(capsys, state_dir, "devices", "list")
    assert code == 0, err
    header, line = out.splitlines()
    assert header.split()[:4] == ["ID", "GROUP", "ENABLED", "ACCOUNT"]
    assert line.split()[:4] == ["truck-42", "north", "yes", "active"]
    assert secret not in out


def test_integrators_add_and_list(stack: StackState, state_dir: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = _fleet(capsys, state_dir, "integrators", "add", "acme", "--group", "north")
    assert code == 0, err
    secret = out.strip()
    assert _fleet(capsys, state_dir, "integrators", "revoke", "acme")[0] == 0
    assert _fleet(capsys, state_dir, "integrators", "add", "globex")[0] == 0

    code, out, err = _fleet(capsys, state_dir, "integrators", "list")

    assert code == 0, err
    rows = [line.split()[:3] for line in out.splitlines()[1:]]
    assert rows == [["acme", "north", "revoked"], ["globex", "(every", "device)"]]
    assert secret not in out


def test_users_and_api_keys_add_list_revoke_on_the_stacks_database(
    stack: StackState, state_dir: Path, database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = _fleet(capsys, state_dir, "users", "api-key", "add", "acme", "--group", "north")
    assert code == 0, err
    key = out.strip()
    code, out, err = _fleet(capsys, state_dir, "users", "api-key", "globex")  # the older spelling still adds
    assert code == 0, err
    other = out.strip()

    code, out, err = _fleet(capsys, state_dir, "users", "api-key", "list")
    assert code == 0, err
    assert key not in out
    assert other not in out
    lines = out.splitlines()
    assert lines[0].split() == ["ID", "NAME", "PREFIX", "GROUP", "CREATED", "REVOKED"]
    acme = lines[1].split()
    assert acme[1:4] == ["acme", f"{key[:SHOWN_PREFIX_CHARS]}…", "north"]
    assert acme[-1] == "-"  # not revoked

    code, _, err = _fleet(capsys, state_dir, "users", "api-key", "revoke", acme[0])
    assert code == 0, err
    assert f"revoked API key {acme[0]}" in err
    with psycopg.connect(database_url) as conn:
        rows = conn.execute("SELECT key_sha256, revoked_at IS NOT NULL FROM api_keys ORDER BY id").fetchall()
    assert [(bytes(digest), revoked) for digest, revoked in rows] == [
        (hashlib.sha256(key.encode()).digest(), True),
        (hashlib.sha256(other.encode()).digest(), False),
    ]
    code, _, err = _fleet(capsys, state_dir, "users", "api-key", "revoke", "999")
    assert (code, "no API key has id 999" in err) == (1, True)


def test_status_names_the_stack_its_processes_and_fields_for_scripts(
    stack: StackState, state_dir: Path, mqtt_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _fleet(capsys, state_dir, "devices", "add", "truck-7")[0] == 0

    code, out, err = _fleet(capsys, state_dir, "status")
    assert code == 0, err
    assert "fleetbridge is running from" in out
    assert mqtt_url in out
    assert "1 registered, 0 online" in out

    code, out, _ = _fleet(capsys, state_dir, "status", "--field", "mqtt_port")
    assert (code, out) == (0, f"{mqtt_url.rsplit(':', 1)[1]}\n")
    code, out, _ = _fleet(capsys, state_dir, "status", "--field", "api_url")
    assert (code, out) == (0, "http://127.0.0.1:1\n")


def test_sim_without_url_publishes_to_the_running_stacks_broker(
    stack: StackState, state_dir: Path, mqtt_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"stk{time.monotonic_ns() % 10**6}-"
    subscriber = RawSubscriber(mqtt_url, [device_topic(f"{prefix}0001", TopicKind.TELEMETRY)])
    try:
        subscriber.wait_subscribed()
        code, _, err = _fleet(
            capsys, state_dir, "sim", "--devices", "1", "--count", "3", "--rate", "0", "--prefix", prefix, "--quiet"
        )
        assert code == 0, err
        assert "publishing to the local stack running from" in err
        assert subscriber.wait_for(lambda messages: len(messages) >= 3)
    finally:
        subscriber.close()


def test_sim_without_url_and_without_a_running_stack_refuses(
    state_dir: Path, mqtt_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stale = StackState(
        owner=ProcessIdentity(ProcessIdentity.current().pid, 1, ("gone",)),  # a stack that no longer runs
        urls={"ui": "http://127.0.0.1:1/", "mqtt": mqtt_url},
        sim_url=mqtt_url,
    )
    for prepare in (lambda: None, lambda: (state_dir.mkdir(), write_state(state_dir, stale))):
        prepare()
        with pytest.raises(SystemExit) as exc:
            _fleet(capsys, state_dir, "sim", "--devices", "1", "--count", "1")
        assert exc.value.code == 2
        err = capsys.readouterr().err
        assert "no broker to publish to: no local stack is running" in err
        assert "fleet up" in err
        assert "--url" in err


def test_account_commands_without_a_stack_or_variables_say_what_to_do(
    state_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for argv in (["devices", "add", "t-1"], ["devices", "list"], ["users", "api-key", "list"]):
        code, _, err = _fleet(capsys, state_dir, *argv)
        assert code == 2
        assert "no local stack is running" in err
        assert "fleet up" in err
        assert "FLEETBRIDGE_DATABASE_URL" in err


def test_sim_help_names_itself_fleet_sim(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        run(["sim", "--help"], {})
    assert capsys.readouterr().out.startswith("usage: fleet sim ")
