"""The live WebSocket against real Redis: snapshots, stream updates, unsubscribe, several instances."""

from __future__ import annotations

from typing import Any

import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import ClientConnection

from api.server import running
from config import Settings
from models.state import LIVE_STREAM_KEY, encode_field, state_key
from tests.integration.api.live_client import TS_MS, live_client, publish, receive, request

pytestmark = pytest.mark.integration


async def subscribe(ws: ClientConnection, devices: list[str], action: str = "subscribe") -> list[dict[str, Any]]:
    """Send a request by device ids; return the messages up to and including its acknowledgement."""
    return await request(ws, action, devices=devices)


async def test_live_sends_snapshots_then_changes_of_subscribed_devices_only(
    api_url: str, admin_token: str, redis_client: aioredis.Redis
) -> None:
    await redis_client.hset(
        state_key("truck-0001"),
        mapping={
            "pos": encode_field(TS_MS, 0, 5, b'{"lat":52.5,"lon":13.4,"speed":40.0}'),
            "m.fuel": encode_field(TS_MS, 0, 5, b"70.0"),
        },
    )

    async with live_client(api_url, admin_token) as ws:
        replies = await subscribe(ws, ["truck-0001", "truck-0002"])
        await publish(redis_client, "truck-0003", {"m.fuel": encode_field(TS_MS + 500, 0, 1, b"10.0")})
        entry_id = await publish(redis_client, "truck-0001", {"m.fuel": encode_field(TS_MS + 1000, 0, 6, b"69.5")})
        update = await receive(ws)

    snapshots = {reply["device_id"]: reply["state"] for reply in replies if reply["type"] == "snapshot"}
    assert snapshots["truck-0002"] is None
    assert snapshots["truck-0001"]["position"]["speed"] == 40.0
    assert snapshots["truck-0001"]["metrics"]["fuel"]["value"] == 70.0
    assert replies[-1] == {"type": "subscribed", "devices": ["truck-0001", "truck-0002"]}
    assert update["type"] == "state"
    assert update["device_id"] == "truck-0001"
    assert update["cursor"] == entry_id
    assert update["changes"]["metrics"] == {"fuel": {"value": 69.5, "ts": "2025-11-24T16:00:01Z", "seq": 6, "boot": 0}}
    assert update["changes"]["position"] is None


async def test_live_subscribe_to_all_snapshots_known_devices_and_streams_any(
    api_url: str, admin_token: str, redis_client: aioredis.Redis
) -> None:
    for n in (1, 2):
        await redis_client.hset(state_key(f"truck-000{n}"), mapping={"m.fuel": encode_field(TS_MS, 0, 1, b"50.0")})

    async with live_client(api_url, admin_token) as ws:
        replies = await subscribe(ws, ["*"])
        await publish(redis_client, "van-42", {"quality": encode_field(TS_MS, 0, 9, b"88")})
        update = await receive(ws)

    assert sorted(reply["device_id"] for reply in replies if reply["type"] == "snapshot") == [
        "truck-0001",
        "truck-0002",
    ]
    assert update["device_id"] == "van-42"
    assert update["changes"]["quality"]["value"] == 88


async def test_live_unsubscribe_stops_a_devices_updates(
    api_url: str, admin_token: str, redis_client: aioredis.Redis
) -> None:
    async with live_client(api_url, admin_token) as ws:
        await subscribe(ws, ["truck-0001", "truck-0002"])
        replies = await subscribe(ws, ["truck-0001"], action="unsubscribe")
        await publish(redis_client, "truck-0001", {"m.fuel": encode_field(TS_MS, 0, 1, b"1.0")})
        await publish(redis_client, "truck-0002", {"m.fuel": encode_field(TS_MS, 0, 1, b"2.0")})
        update = await receive(ws)

    assert replies == [{"type": "unsubscribed", "devices": ["truck-0001"]}]
    assert update["device_id"] == "truck-0002"


async def test_live_refuses_a_bad_request_and_keeps_the_connection(
    api_url: str, admin_token: str, redis_client: aioredis.Redis
) -> None:
    async with live_client(api_url, admin_token) as ws:
        not_json = await subscribe(ws, ["truck/0001"])
        await ws.send("not json")
        garbage = await receive(ws)
        await subscribe(ws, ["truck-0001"])
        await publish(redis_client, "truck-0001", {"m.fuel": encode_field(TS_MS, 0, 1, b"3.0")})
        update = await receive(ws)

    assert not_json[-1]["type"] == "error"
    assert "devices" in not_json[-1]["message"]
    assert garbage["type"] == "error"
    assert update["device_id"] == "truck-0001"


async def test_live_skips_undecodable_stream_entries(
    api_url: str, admin_token: str, redis_client: aioredis.Redis
) -> None:
    async with live_client(api_url, admin_token) as ws:
        await subscribe(ws, ["truck-0001"])
        await publish(redis_client, "truck-0001", {"m.fuel": b"not-an-encoded-field"})
        await redis_client.xadd(LIVE_STREAM_KEY, {"d": "bad/id", "k": "state", "m.fuel": b"1"})
        entry_id = await publish(redis_client, "truck-0001", {"m.fuel": encode_field(TS_MS, 0, 2, b"4.0")})
        update = await receive(ws)

    assert update["cursor"] == entry_id


async def test_live_every_instance_delivers_from_the_shared_stream(
    api_settings: Settings, admin_token: str, redis_client: aioredis.Redis
) -> None:
    async with (
        running(api_settings) as first_url,
        running(api_settings) as second_url,
        live_client(first_url, admin_token) as first,
        live_client(second_url, admin_token) as second,
    ):
        await subscribe(first, ["truck-0001"])
        await subscribe(second, ["*"])
        entry_id = await publish(redis_client, "truck-0001", {"m.fuel": encode_field(TS_MS, 0, 3, b"5.0")})
        updates = [await receive(first), await receive(second)]

    assert [update["cursor"] for update in updates] == [entry_id, entry_id]
    assert all(update["changes"]["metrics"]["fuel"]["value"] == 5.0 for update in updates)
