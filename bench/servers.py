"""Private Mosquitto, Redis and PostgreSQL for one benchmark run, with the schema migrated (`stack.servers`)."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stack import servers  # noqa: E402
from stack.process import ServerProcess  # noqa: E402

RECEIVE_MAXIMUM = 2000


def progress(text: str) -> None:
    """A timestamped progress line on stderr (the figures go to stdout)."""
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def rss_mib(pid: int | None) -> float | None:
    """Resident memory of a process in MiB, or None when it is gone."""
    if pid is None:
        return None
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    except (OSError, ValueError):
        return None
    return None


def service_env(extra: dict[str, str]) -> dict[str, str]:
    """The environment of a bridge or API child: this one's without FLEETBRIDGE_* settings, except the
    bridge's own tuning (FLEETBRIDGE_BRIDGE_*, so that settings can be compared), plus `extra`."""
    env = {
        k: v for k, v in os.environ.items() if not k.startswith("FLEETBRIDGE_") or k.startswith("FLEETBRIDGE_BRIDGE_")
    }
    return env | extra


def start_bridge(
    urls: dict[str, str], logs: Path, client_id: str, *, stats_interval_ms: int = 200
) -> subprocess.Popen[bytes]:
    """A bridge process (`python -m bridge`) on these servers, logging to `logs/<client_id>.log`."""
    env = service_env(
        {
            "FLEETBRIDGE_MQTT_URL": urls["mqtt"],
            "FLEETBRIDGE_MQTT_CLIENT_ID": client_id,
            "FLEETBRIDGE_MQTT_RECEIVE_MAXIMUM": str(RECEIVE_MAXIMUM),
            "FLEETBRIDGE_REDIS_URL": urls["redis"],
            "FLEETBRIDGE_DATABASE_URL": urls["database"],
            "FLEETBRIDGE_BRIDGE_STATS_INTERVAL_MS": str(stats_interval_ms),
        }
    )
    with (logs / f"{client_id}.log").open("wb") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "bridge"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT
        )


def start_servers(base: Path, started: list[ServerProcess]) -> tuple[ServerProcess, ServerProcess, ServerProcess]:
    """Start the three servers under `base`, appending each to `started` (the caller stops them)."""
    print(f"[{time.strftime('%H:%M:%S')}] starting Mosquitto, Redis and PostgreSQL under {base}", file=sys.stderr)
    return servers.start_servers(base, started)


API_READY_TIMEOUT_S = 60


def free_port() -> int:
    """A TCP port free on the loopback interface right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def start_api(
    urls: dict[str, str], logs: Path, port: int, *, jwt_secret: str, extra: dict[str, str] | None = None
) -> subprocess.Popen[bytes]:
    """An API process (`python -m api`) on these servers, logging to `logs/api.log`; returns once it is ready."""
    env = service_env(
        {
            "FLEETBRIDGE_REDIS_URL": urls["redis"],
            "FLEETBRIDGE_DATABASE_URL": urls["database"],
            "FLEETBRIDGE_API_JWT_SECRET": jwt_secret,
            "FLEETBRIDGE_API_PORT": str(port),
        }
        | (extra or {})
    )
    with (logs / "api.log").open("wb") as log:
        child = subprocess.Popen([sys.executable, "-m", "api"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + API_READY_TIMEOUT_S
    while time.monotonic() < deadline:
        if child.poll() is not None:
            raise RuntimeError(f"the API exited: see {logs / 'api.log'}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/readyz", timeout=1).status_code == 200:
                return child
        except httpx.HTTPError:
            pass
        time.sleep(0.1)
    raise RuntimeError(f"the API did not become ready: see {logs / 'api.log'}")


def stop_all(children: list[subprocess.Popen[bytes]], servers: list[Any]) -> None:
    """Stop the service processes (newest first), then the servers."""
    for child in reversed(children):
        child.terminate()
    for child in children:
        try:
            child.wait(30)
        except subprocess.TimeoutExpired:
            child.kill()
    for server in reversed(servers):
        server.stop()
