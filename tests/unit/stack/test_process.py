"""The process launcher on stand-in servers (sh and sleep): errors are clear and nothing is left running."""

from __future__ import annotations

import socket
import time
from pathlib import Path

import pytest

from stack.process import (
    LaunchSpec,
    PortInUseError,
    ServerProcess,
    ServerStartError,
    _group_members,
    claim_port,
    free_port,
    port_is_free,
    wait_until,
)


def _start(tmp_path: Path, script: str, *, ready_file: str | None = None, timeout_s: float = 5) -> ServerProcess:
    marker = tmp_path / ready_file if ready_file else None
    return ServerProcess.start(
        "standin",
        url="standin://",
        port=free_port(),
        data_dir=tmp_path,
        log_path=tmp_path / "standin.log",
        spec=LaunchSpec(
            argv=("sh", "-c", script), ready=lambda: marker is None or marker.exists(), start_timeout_s=timeout_s
        ),
    )


def test_wait_until_names_what_it_waited_for() -> None:
    with pytest.raises(TimeoutError, match=r"timed out after 0\.05 s waiting for the moon"):
        wait_until(lambda: False, 0.05, "the moon")


def test_claim_port_names_a_taken_port() -> None:
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        port = blocker.getsockname()[1]

        assert not port_is_free(port)
        with pytest.raises(PortInUseError, match=f"port {port} "):
            claim_port(port, "redis")


def test_claim_port_zero_picks_a_free_port() -> None:
    port = claim_port(0, "redis")

    assert port > 0
    assert port_is_free(port)


def test_start_reports_an_early_exit_with_the_log_tail(tmp_path: Path) -> None:
    started = time.monotonic()

    with pytest.raises(ServerStartError, match=r"(?s)exited with code 3 .*bad config line 7"):
        _start(tmp_path, "echo 'bad config line 7' >&2; exit 3", ready_file="never")

    assert time.monotonic() - started < 2


def test_start_gives_up_after_its_timeout_and_kills_the_server(tmp_path: Path) -> None:
    with pytest.raises(ServerStartError, match=r"timed out after 0\.2 s waiting for standin") as caught:
        _start(tmp_path, "echo $$ > pid; echo still booting; exec sleep 60", ready_file="never", timeout_s=0.2)

    assert "still booting" in str(caught.value)
    assert _group_members(int((tmp_path / "pid").read_text())) == []


def test_stop_ends_every_process_of_the_group(tmp_path: Path) -> None:
    server = _start(tmp_path, "sleep 60 & touch ready; exec sleep 60", ready_file="ready")
    assert server.pid is not None
    assert len(_group_members(server.pid)) == 2

    server.stop()

    assert not server.alive
    assert _group_members(server.pid) == []


def test_kill_then_restart_runs_again_on_the_same_port(tmp_path: Path) -> None:
    with _start(tmp_path, "exec sleep 60") as server:
        first_pid, port = server.pid, server.port

        server.kill()
        assert not server.alive

        server.restart()
        assert server.alive
        assert server.pid != first_pid
        assert server.port == port
    assert not server.alive
