"""A WebSocket client of `/api/v1/live` for the tests, and stream entries written the way the bridge does."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any
from urllib.parse import urlencode

import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection, connect

from models.state import LIVE_STREAM_KEY, encode_field

TIMEOUT_S = 10  # generous: the machine running the suite may be busy
TS_MS = 1_764_000_000_000
ACKS = frozenset({"subscribed", "unsubscribed", "auth", "error"})


@asynccontextmanager
async def live_client(api_url: str, token: str, **query: str) -> AsyncIterator[ClientConnection]:
    url = api_url.replace("http://", "ws://") + "/api/v1/live?" + urlencode({"token": token, **query})
    async with connect(url, open_timeout=TIMEOUT_S) as ws:
        yield ws


async def receive(ws: ClientConnection) -> dict[str, Any]:
    message = await asyncio.wait_for(ws.recv(), TIMEOUT_S)
    assert isinstance(message, str)  # a text frame: browsers hand binary frames to JSON.parse as Blobs
    decoded: dict[str, Any] = json.loads(message)
    return decoded


async def request(ws: ClientConnection, action: str = "subscribe", **selector: Any) -> list[dict[str, Any]]:
    """Send a request; return the messages up to and including its acknowledgement (heartbeats skipped)."""
    await ws.send(json.dumps({"action": action, **selector}))
    replies: list[dict[str, Any]] = []
    while not replies or replies[-1]["type"] not in ACKS:
        reply = await receive(ws)
        if reply["type"] != "heartbeat":
            replies.append(reply)
    return replies


async def publish(redis_client: aioredis.Redis, device_id: str, fields: dict[str, bytes], kind: str = "state") -> str:
    """XADD a live entry the way the bridge does; return its id."""
    entry: dict[Any, Any] = {"d": device_id, "k": kind, **fields}
    entry_id = await redis_client.xadd(LIVE_STREAM_KEY, entry)
    return entry_id.decode() if isinstance(entry_id, bytes) else str(entry_id)


async def publish_fuel(redis_client: aioredis.Redis, device_id: str, seq: int, value: float) -> str:
    return await publish(redis_client, device_id, {"m.fuel": encode_field(TS_MS + seq, 0, seq, b"%r" % value)})


async def publish_position(redis_client: aioredis.Redis, device_id: str, seq: int, lon: float, lat: float) -> str:
    value = json.dumps({"lat": lat, "lon": lon}).encode()
    return await publish(redis_client, device_id, {"pos": encode_field(TS_MS + seq, 0, seq, value)})


async def updates_until(ws: ClientConnection, last_cursor: str) -> list[dict[str, Any]]:
    """Every update and replay message up to the one carrying `last_cursor` (heartbeats skipped)."""
    seen: list[dict[str, Any]] = []
    while not seen or seen[-1].get("cursor") != last_cursor:
        message = await receive(ws)
        if message["type"] != "heartbeat":
            seen.append(message)
    return seen
