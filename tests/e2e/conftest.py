"""The whole spine for one test: simulated trucks → Mosquitto → bridge → Redis + PostgreSQL → API.

`api_url` runs a bridge and an API in the test's event loop, both on `bridge_settings` (so they share
the test's Redis and database); `http` is a client logged in as an admin; `start_fleet` starts simulated fleets on the session broker, each
with device ids of its own, and closes them at teardown; `watch_live` is a WebSocket client of
`/api/v1/live` that records what it is sent while the test goes on.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections import Counter, defaultdict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar
from urllib.parse import urlencode

import httpx
import pytest
from websockets.asyncio.client import ClientConnection, connect

from api.server import running
from config import Settings
from firmware_sim.address import parse_broker_url
from firmware_sim.fleet import Fleet, FleetOptions
from models.telemetry import utcnow
from tests.integration.api.conftest import ADMIN_NAME, TEST_JWT_SECRET, add_account, log_in
from tests.integration.bridge import conftest as bridge_fixtures
from tests.integration.bridge.conftest import running_bridge

# The bridge tests' fixture, named here so that pytest finds it for these tests too.
bridge_settings = bridge_fixtures.bridge_settings

T = TypeVar("T")
WS_TIMEOUT_S = 5.0
POLL_INTERVAL_S = 0.05


async def eventually(
    probe: Callable[[], Awaitable[T]], until: Callable[[T], bool], *, timeout_s: float, what: str
) -> T:
    """Poll `probe` until its answer satisfies `until`, and return that answer.

    After `timeout_s` fail with `what` and the last answer, so a stuck stage says where it stuck.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while True:
        answer = await probe()
        if until(answer):
            return answer
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not reached within {timeout_s} s; last seen: {answer!r}")
        await asyncio.sleep(POLL_INTERVAL_S)


@pytest.fixture
async def api_url(bridge_settings: Settings) -> AsyncIterator[str]:
    """The base URL of an API serving what a bridge, running alongside, ingests from the broker."""
    settings = replace(bridge_settings, api=replace(bridge_settings.api, jwt_secret=TEST_JWT_SECRET))
    async with running_bridge(settings), running(settings) as url:
        yield url


@pytest.fixture
async def admin_token(api_url: str, database_url: str) -> str:
    """The access token of an admin account made for the test, from the API's login route."""
    await add_account(database_url, ADMIN_NAME, "admin")
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        return await log_in(client, ADMIN_NAME)


@pytest.fixture
async def http(api_url: str, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the test's API, logged in as an admin."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=api_url, timeout=10, headers=headers) as client:
        yield client


FleetStarter = Callable[..., Fleet]


@pytest.fixture
def start_fleet(mqtt_url: str) -> Iterator[FleetStarter]:
    """Start fleets (`start_fleet(wall_clock=…, **FleetOptions fields)`) with a device id prefix per fleet.

    The broker is shared by the session and keeps retained statuses, hence the unique prefixes. Fleets
    connect in the background; every one is closed at teardown.
    """
    fleets: list[Fleet] = []

    def start(*, wall_clock: Callable[[], datetime] = utcnow, **options: Any) -> Fleet:
        options.setdefault("prefix", f"e2e{uuid.uuid4().hex[:8]}-")
        fleet = Fleet(parse_broker_url(mqtt_url), FleetOptions(**options), wall_clock=wall_clock)
        fleets.append(fleet)
        fleet.start()
        return fleet

    yield start
    for fleet in fleets:
        fleet.close()


@dataclass
class LiveWatcher:
    """What one `/api/v1/live` client was sent: snapshots, then `state`, `presence`, `correction` and
    `event` messages per device (heartbeats are ignored)."""

    snapshots: dict[str, Any] = field(default_factory=dict)
    updates: Counter[str] = field(default_factory=Counter)
    last_position: dict[str, dict[str, Any]] = field(default_factory=dict)
    last_presence: dict[str, dict[str, Any]] = field(default_factory=dict)
    corrections: defaultdict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    events: defaultdict[str, list[dict[str, Any]]] = field(default_factory=lambda: defaultdict(list))
    unexpected: list[dict[str, Any]] = field(default_factory=list)

    async def subscribe(self, ws: ClientConnection, devices: list[str]) -> None:
        """Subscribe and take the replies, snapshots first, up to the acknowledgement."""
        await ws.send(json.dumps({"action": "subscribe", "devices": devices}))
        while True:
            message = json.loads(await asyncio.wait_for(ws.recv(), WS_TIMEOUT_S))
            if message["type"] == "snapshot":
                self.snapshots[message["device_id"]] = message["state"]
            elif message["type"] == "subscribed":
                return
            else:
                raise AssertionError(f"unexpected reply to subscribe: {message}")

    async def consume(self, ws: ClientConnection) -> None:
        """Record every message until the connection closes."""
        async for text in ws:
            message = json.loads(text)
            if message["type"] == "presence":
                self.last_presence[message["device_id"]] = message["presence"]
                continue
            if message["type"] == "correction":
                self.corrections[message["device_id"]].append(message["values"])
                continue
            if message["type"] == "event":
                self.events[message["device_id"]].append(message["event"])
                continue
            if message["type"] == "heartbeat":
                continue
            if message["type"] != "state":
                self.unexpected.append(message)
                continue
            device_id = message["device_id"]
            self.updates[device_id] += 1
            if message["changes"]["position"] is not None:
                self.last_position[device_id] = message["changes"]["position"]
            if message["changes"].get("presence") is not None:
                self.last_presence[device_id] = message["changes"]["presence"]


@pytest.fixture
def watch_live(
    api_url: str, admin_token: str
) -> Callable[[list[str]], contextlib.AbstractAsyncContextManager[LiveWatcher]]:
    """`async with watch_live(devices) as watcher`: subscribed (snapshots taken), then recording."""

    @contextlib.asynccontextmanager
    async def watch(devices: list[str]) -> AsyncIterator[LiveWatcher]:
        # The token as a query parameter, the way the operator page passes it.
        url = api_url.replace("http://", "ws://", 1) + "/api/v1/live?" + urlencode({"token": admin_token})
        async with connect(url, open_timeout=WS_TIMEOUT_S) as ws:
            watcher = LiveWatcher()
            await watcher.subscribe(ws, devices)
            reader = asyncio.create_task(watcher.consume(ws), name="e2e-live-reader")
            try:
                yield watcher
            finally:
                if reader.done():
                    reader.result()  # a reader that failed raises its error here
                reader.cancel()
                await asyncio.wait([reader])

    return watch
