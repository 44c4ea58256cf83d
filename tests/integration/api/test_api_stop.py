"""`python -m api` stops within a few seconds of SIGTERM or SIGINT, quietly, whatever its servers do.

The API reaches Redis, PostgreSQL and the broker through TCP proxies of the test's own, so that the
servers can be taken away from it without touching the session's servers: *stopped* (every connection
closed, new ones refused) or *frozen* (nothing comes back on open connections, new ones hang). A live
WebSocket client and a long poll are open when the signal comes.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx
import pytest

from stack.netproxy import Mode, ProxyThread
from stack.process import free_port
from tests.integration.api.conftest import TEST_JWT_SECRET, mint_token, settings_for
from tests.integration.api.live_client import live_client, request
from tests.integration.stopping import STOP_LIMIT_S, wait_stopped

pytestmark = pytest.mark.integration

START_LIMIT_S = 30.0


def _via(url: str, proxy: ProxyThread) -> str:
    """`url` with its port replaced by the proxy's."""
    parts = urlsplit(url)
    netloc = parts.netloc.rsplit(":", 1)[0] + f":{proxy.port}"
    return urlunsplit(parts._replace(netloc=netloc))


def _proxy(url: str) -> ProxyThread:
    parts = urlsplit(url)
    assert parts.hostname is not None
    assert parts.port is not None
    return ProxyThread(parts.hostname, parts.port)


@pytest.fixture
def proxies(redis_url: str, database_url: str, mqtt_url: str) -> Iterator[dict[str, ProxyThread]]:
    """A proxy in front of each server, closed at the end."""
    started = {name: _proxy(url) for name, url in (("redis", redis_url), ("db", database_url), ("mqtt", mqtt_url))}
    for proxy in started.values():
        proxy.start()
    try:
        yield started
    finally:
        for proxy in started.values():
            proxy.close()


def _take_away(proxies: dict[str, ProxyThread], how: str) -> None:
    for proxy in proxies.values():
        if how == "stopped":
            proxy.set_mode(Mode.REFUSE)
            proxy.cut(reset=False)  # a server that exits closes its connections (FIN)
        else:
            proxy.set_mode(Mode.BLACKHOLE)
            proxy.set_latency(3600.0)


def _start(argv: list[str], log_path: Path, env: dict[str, str] | None = None) -> subprocess.Popen[bytes]:
    """A child process writing its output to `log_path`."""
    with log_path.open("wb") as log:
        return subprocess.Popen(argv, env=env, stdout=log, stderr=subprocess.STDOUT)


@pytest.mark.parametrize(("how", "sig"), [("stopped", signal.SIGTERM), ("frozen", signal.SIGINT)])
async def test_api_process_stops_promptly_and_quietly_when_its_servers_are_gone(
    proxies: dict[str, ProxyThread],
    redis_url: str,
    database_url: str,
    mqtt_url: str,
    tmp_path: Path,
    how: str,
    sig: signal.Signals,
) -> None:
    port = free_port()
    env = {
        "FLEETBRIDGE_REDIS_URL": _via(redis_url, proxies["redis"]),
        "FLEETBRIDGE_DATABASE_URL": _via(database_url, proxies["db"]),
        "FLEETBRIDGE_API_MQTT_URL": _via(mqtt_url, proxies["mqtt"]),
        "FLEETBRIDGE_API_JWT_SECRET": TEST_JWT_SECRET,
        "FLEETBRIDGE_API_PORT": str(port),
        "PATH": "/usr/bin:/bin",
    }
    log_path = tmp_path / "api.log"
    child = _start([sys.executable, "-m", "api"], log_path, env)
    try:
        base = f"http://127.0.0.1:{port}"
        token = mint_token(settings_for(redis_url, database_url), "admin", "admin")
        async with httpx.AsyncClient(base_url=base, headers={"Authorization": f"Bearer {token}"}) as client:
            await _wait_ready(client, child)
            async with live_client(base, token) as ws:
                await request(ws, devices=["*"])
                long_poll = asyncio.create_task(client.get("/api/v1/live", params={"wait": 25}, timeout=60))
                await asyncio.sleep(0.5)  # the poll is waiting in Redis now
                _take_away(proxies, how)
                await asyncio.sleep(1.0)  # the API notices (or not: frozen servers say nothing)
                child.send_signal(sig)
                code = await asyncio.to_thread(wait_stopped, child)
                long_poll.cancel()
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    output = log_path.read_text(errors="replace")
    assert code is not None, f"still running {STOP_LIMIT_S} s after {sig.name}:\n{output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]


async def _wait_ready(client: httpx.AsyncClient, child: subprocess.Popen[bytes]) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + START_LIMIT_S
    while loop.time() < deadline:
        assert child.poll() is None, "the API exited while starting"
        try:
            if (await client.get("/healthz")).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        await asyncio.sleep(0.1)
    raise AssertionError("the API did not start")


# A server whose shutdown never ends: the lifespan's cleanup waits for ever and ignores cancellation.
_STUCK_SERVER = textwrap.dedent(
    """
    import asyncio, contextlib, logging, sys
    import uvicorn
    from litestar import Litestar
    from api.server import DeadlineServer

    @contextlib.asynccontextmanager
    async def stuck(app):
        yield
        while True:
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.sleep(3600)

    logging.basicConfig(level=logging.INFO)  # as `python -m api` does
    app = Litestar([], lifespan=[stuck], logging_config=None)
    config = uvicorn.Config(app, host="127.0.0.1", port=int(sys.argv[1]), lifespan="on")
    DeadlineServer(config, deadline_s=float(sys.argv[2])).run()
    """
)


async def test_api_server_exits_at_its_stop_deadline_whatever_its_shutdown_waits_for(tmp_path: Path) -> None:
    port = free_port()
    log_path = tmp_path / "stuck.log"
    child = _start([sys.executable, "-c", _STUCK_SERVER, str(port), "1.0"], log_path)
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as client:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + START_LIMIT_S
            while True:
                assert child.poll() is None, log_path.read_text()
                try:
                    await client.get("/")
                    break
                except httpx.HTTPError:
                    assert loop.time() < deadline, "the server did not start"
                    await asyncio.sleep(0.1)
        child.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(wait_stopped, child)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    output = log_path.read_text(errors="replace")
    assert code == 1, output
    assert "exiting now" in output
    assert "Traceback" not in output
