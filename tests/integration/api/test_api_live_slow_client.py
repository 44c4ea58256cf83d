"""A client that stops reading costs the server a bounded outbox, and gets the newest state when it reads again."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest
import redis.asyncio as aioredis
import uvicorn
from litestar import Litestar

from api.app import create_app
from api.backends import STATE_KEY, Backends
from api.live.cursor import stream_id
from config import Settings
from models.state import LIVE_STREAM_KEY, encode_field
from tests.integration.api.live_client import TS_MS, live_client, receive, request

pytestmark = pytest.mark.integration

DEVICES = 5
ENTRIES = 20_000
# Enough metrics per entry that the flood (tens of MB) overflows every socket buffer between the two.
METRICS = [f"sensor_{n:02d}" for n in range(40)]


@contextlib.asynccontextmanager
async def serving(app: Litestar) -> AsyncIterator[str]:
    """Serve `app` itself (not a copy made by the server helper), so the test can look at its hub."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as listener:
        listener.bind(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        server = uvicorn.Server(uvicorn.Config(app, lifespan="on", log_config=None, ws="websockets-sansio"))
        task = asyncio.create_task(server.serve(sockets=[listener]))
        try:
            while not server.started:
                assert not task.done()
                await asyncio.sleep(0.01)
            yield f"http://127.0.0.1:{port}"
        finally:
            server.should_exit = True
            await task


async def flood(redis_client: aioredis.Redis) -> dict[str, tuple[float, str]]:
    """ENTRIES state entries spread over DEVICES devices; returns each device's newest (value, entry id)."""
    newest: dict[str, tuple[float, str]] = {}
    for start in range(0, ENTRIES, 1000):
        async with redis_client.pipeline(transaction=False) as pipe:
            for n in range(start, start + 1000):
                value = b"%d.0" % n
                fields: dict[Any, Any] = {"d": f"truck-{n % DEVICES}", "k": "state"}
                fields |= {f"m.{name}": encode_field(TS_MS + n, 0, n, value) for name in METRICS}
                pipe.xadd(LIVE_STREAM_KEY, fields)
            ids = await pipe.execute()
        for n, entry_id in zip(range(start, start + 1000), ids, strict=True):
            newest[f"truck-{n % DEVICES}"] = (float(n), entry_id.decode())
    return newest


async def test_live_client_that_never_reads_costs_a_bounded_outbox_and_then_gets_the_newest_state(
    api_settings: Settings, admin_token: str, redis_client: aioredis.Redis
) -> None:
    app = create_app(api_settings)
    async with serving(app) as url, live_client(url, admin_token) as ws:
        await request(ws, devices=["*"])
        ws.transport.pause_reading()  # the client stops reading: the server's writes back up
        newest = await flood(redis_client)
        backends = app.state[STATE_KEY]
        assert isinstance(backends, Backends)
        hub = backends.hub
        last_entry = stream_id(max(entry_id for _, entry_id in newest.values()))
        while hub.position < last_entry:  # noqa: ASYNC110 - the hub has no event to wait on; polled only here
            await asyncio.sleep(0.05)
        (subscriber,) = hub.subscribers
        pending, conflated = subscriber.outbox.pending, subscriber.outbox.conflated
        ws.transport.resume_reading()
        received = 0
        latest: dict[str, float] = {}
        while any(latest.get(device) != value for device, (value, _) in newest.items()):
            message = await receive(ws)
            if message["type"] == "state":
                received += 1
                latest[message["device_id"]] = message["changes"]["metrics"]["sensor_00"]["value"]

    assert pending <= DEVICES  # one pending update per device, however many entries arrived
    assert conflated > ENTRIES / 2  # most entries were folded into pending updates...
    assert received < ENTRIES / 2  # ...so the client received far fewer messages
    assert latest == {device: value for device, (value, _) in newest.items()}  # and the newest state
