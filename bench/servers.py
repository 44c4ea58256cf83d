"""Private Mosquitto, Redis and PostgreSQL for one benchmark run, with the schema migrated (`stack.servers`)."""

from __future__ import annotations

import contextlib
import json
import multiprocessing
import os
import platform
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.accounts.roles import Role  # noqa: E402
from api.auth import TokenIssuer, build_auth  # noqa: E402
from config import load_settings  # noqa: E402
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


@dataclass
class BenchStack:
    """The servers, a bridge and (when asked for) an API of one benchmark run, and an admin's token."""

    base: Path
    urls: dict[str, str]
    children: list[subprocess.Popen[bytes]]
    api_url: str = ""
    token: str = ""


@contextlib.contextmanager
def bench_stack(
    prefix: str, *, bridge_id: str, jwt_secret: str | None = None, api_on_broker: bool = False
) -> Iterator[BenchStack]:
    """Mosquitto, Redis and PostgreSQL under a new folder, a bridge, and with `jwt_secret` an API (with an
    admin account `bench` and its token: live connections check the account exists; with `api_on_broker`,
    its MQTT link, for commands); all stopped after."""
    base = Path(tempfile.mkdtemp(prefix=prefix))
    base.chmod(0o755)
    servers: list[Any] = []
    children: list[subprocess.Popen[bytes]] = []
    try:
        mosquitto, redis_server, postgres = start_servers(base, servers)
        urls = {"mqtt": mosquitto.url, "redis": redis_server.url, "database": postgres.url}
        stats = redis.Redis.from_url(urls["redis"], decode_responses=True)
        children.append(start_bridge(urls, base, bridge_id))
        while stats.hget(f"fleet:bridge:{bridge_id}", "connects") != "1":
            if children[0].poll() is not None:
                raise RuntimeError(f"the bridge exited: see {base / (bridge_id + '.log')}")
            time.sleep(0.05)
        stack = BenchStack(base, urls, children)
        if jwt_secret is not None:
            port = free_port()
            extra = {"FLEETBRIDGE_API_MQTT_URL": urls["mqtt"]} if api_on_broker else None
            children.append(start_api(urls, base, port, jwt_secret=jwt_secret, extra=extra))
            with psycopg.connect(urls["database"], autocommit=True) as conn:
                conn.execute(
                    "INSERT INTO users (username, role, password_hash) VALUES ('bench', 'admin', '$argon2id$unusable')"
                )
            stack.api_url = f"http://127.0.0.1:{port}"
            stack.token = TokenIssuer(build_auth(load_settings({"FLEETBRIDGE_API_JWT_SECRET": jwt_secret}).api)).issue(
                "bench", Role.ADMIN
            )
        yield stack
    finally:
        stop_all(children, servers)


def new_results(**fields: Any) -> dict[str, Any]:
    """A run's results, stamped with when and on what."""
    return {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": multiprocessing.cpu_count(), "python": platform.python_version()},
    } | fields


def write_results(name: str, results: dict[str, Any]) -> Path:
    """Write `results` to bench/results/<name>-<time>.json; its path."""
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = ROOT / "bench" / "results" / f"{name}-{stamp}.json"
    out.write_text(json.dumps(results, indent=1) + "\n")
    progress(f"results in {out}")
    return out
