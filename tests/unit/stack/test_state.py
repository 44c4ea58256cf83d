"""The stack's state file and `fleet down`: a pid is signalled only while it is still the stack's process."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from cli.main import run
from stack.identity import ProcessIdentity
from stack.state import StackState, read_state, running_stack, state_path, stop_running, write_state

URLS = {"mqtt": "mqtt://127.0.0.1:41883", "ui": "http://127.0.0.1:48000/", "database": "postgresql://x@h:5/d"}


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen[bytes]]:
    """An unrelated process that must survive: a `sleep`, ended by the test itself."""
    process = subprocess.Popen(["sleep", "60"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def _stale_file(state_dir: Path, pid: int) -> None:
    """A state file a killed `fleet up` left behind, whose pid the kernel has since given to `pid`."""
    state_dir.mkdir(parents=True, exist_ok=True)
    owner = ProcessIdentity(pid, start_ticks=1, cmdline=(sys.executable, "-m", "cli", "up"))
    state_path(state_dir).write_text(json.dumps(StackState(owner=owner, urls=URLS).to_json()))


def test_identity_of_this_process_matches_and_a_reused_pid_does_not(sleeper: subprocess.Popen[bytes]) -> None:
    me = ProcessIdentity.current()
    assert me.is_running()
    assert ProcessIdentity.from_json(me.to_json()) == me
    other = ProcessIdentity.of(sleeper.pid)
    assert other is not None
    assert other.cmdline == ("sleep", "60")
    # Same pid, another start time: a later holder of the number, not the recorded process.
    assert not ProcessIdentity(sleeper.pid, other.start_ticks + 1, other.cmdline).is_running()
    assert not ProcessIdentity(sleeper.pid, other.start_ticks, ("fleet", "up")).is_running()


def test_identity_of_an_ended_process_is_none() -> None:
    ended = subprocess.Popen(["true"])
    ended.wait()
    assert ProcessIdentity.of(ended.pid) is None


def test_state_file_round_trips_and_is_private(tmp_path: Path) -> None:
    state = StackState(
        owner=ProcessIdentity.current(), urls=URLS, accounts_dir=tmp_path / "acc", device_secrets=tmp_path / "s.csv"
    )
    write_state(tmp_path, state)
    assert read_state(tmp_path) == state
    assert running_stack(tmp_path) == state
    assert oct(state_path(tmp_path).stat().st_mode & 0o777) == "0o600"
    assert (state.value("mqtt_port"), state.value("api_url"), state.value("mqtts_url")) == (
        "41883",
        "http://127.0.0.1:48000",
        "",
    )


def test_stop_running_never_signals_a_process_that_took_over_the_pid(
    tmp_path: Path, sleeper: subprocess.Popen[bytes]
) -> None:
    _stale_file(tmp_path, sleeper.pid)

    assert running_stack(tmp_path) is None
    assert stop_running(tmp_path, timeout_s=1) is False

    assert sleeper.poll() is None  # still running: not signalled
    assert not state_path(tmp_path).exists()  # the stale file is gone


def test_fleet_down_with_a_stale_pid_file_says_so_and_leaves_the_process_alone(
    tmp_path: Path, sleeper: subprocess.Popen[bytes], capsys: pytest.CaptureFixture[str]
) -> None:
    _stale_file(tmp_path, sleeper.pid)

    assert run(["down", "--state-dir", str(tmp_path)], {}) == 0

    err = capsys.readouterr().err
    assert "no stack is running" in err
    assert "removed its stale state file (nothing was signalled)" in err
    assert not state_path(tmp_path).exists()
    assert sleeper.poll() is None


def test_a_state_file_of_an_older_format_counts_as_no_stack(tmp_path: Path, sleeper: subprocess.Popen[bytes]) -> None:
    # What `fleet up` wrote before identities were recorded: a bare pid, which proves nothing.
    state_path(tmp_path).write_text(json.dumps({"pid": sleeper.pid, "urls": URLS}))
    assert running_stack(tmp_path) is None
    assert stop_running(tmp_path, timeout_s=1) is False
    assert sleeper.poll() is None


def test_fleet_status_without_a_stack_exits_3(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["status", "--state-dir", str(tmp_path), "--field", "mqtt_port"], {}) == 3
    out, err = capsys.readouterr()
    assert out == ""
    assert "no local stack is running" in err
    assert "fleet up" in err


def test_an_external_brokers_url_without_a_port_gives_the_default_port() -> None:
    state = StackState(owner=ProcessIdentity.current(), urls=URLS | {"mqtt": "mqtts://user:pw@broker.example"})
    assert (state.value("mqtt_port"), state.value("mqtt_host")) == ("8883", "broker.example")
