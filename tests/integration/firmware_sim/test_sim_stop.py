"""`python -m firmware_sim` stops within a few seconds of SIGINT or SIGTERM, without a traceback, in
any phase: while it connects, and while it runs with its broker gone."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from stack.netproxy import Mode, ProxyThread
from stack.process import free_port
from tests.integration.stopping import STOP_LIMIT_S, wait_stopped

pytestmark = pytest.mark.integration

START_S = 2.0  # long enough for the simulator to import and reach the phase under test


def _simulator(url: str, log_path: Path, *extra: str) -> subprocess.Popen[bytes]:
    argv = [sys.executable, "-m", "firmware_sim", "--url", url, "--devices", "2", "--prefix", "stop-", *extra]
    with log_path.open("wb") as log:
        return subprocess.Popen(argv, stdout=log, stderr=subprocess.STDOUT)


def test_simulator_interrupted_while_connecting_exits_quietly(tmp_path: Path) -> None:
    # Nothing listens there: the devices keep retrying and the simulator waits for its connect timeout.
    child = _simulator(f"mqtt://127.0.0.1:{free_port()}", tmp_path / "sim.log", "--connect-timeout", "60")
    time.sleep(START_S)
    child.send_signal(signal.SIGINT)
    code = wait_stopped(child)
    output = (tmp_path / "sim.log").read_text(errors="replace")
    assert code == 130, output
    assert "interrupted" in output
    assert "Traceback" not in output, output


def test_simulator_stops_on_sigterm_while_its_broker_is_gone(mqtt_url: str, tmp_path: Path) -> None:
    broker = urlsplit(mqtt_url)
    assert broker.hostname is not None
    assert broker.port is not None
    with ProxyThread(broker.hostname, broker.port) as proxy:
        child = _simulator(f"mqtt://127.0.0.1:{proxy.port}", tmp_path / "sim.log", "--rate", "10")
        time.sleep(START_S)
        proxy.set_mode(Mode.BLACKHOLE)
        proxy.set_latency(3600.0)  # the broker stops answering: nothing comes back, nothing is refused
        time.sleep(0.5)
        child.send_signal(signal.SIGTERM)
        code = wait_stopped(child)
    output = (tmp_path / "sim.log").read_text(errors="replace")
    assert code is not None, f"still running {STOP_LIMIT_S} s after SIGTERM:\n{output[-3000:]}"
    assert "summary:" in output
    assert "Traceback" not in output, output
