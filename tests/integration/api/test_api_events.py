"""Device events end to end: a device publishes over MQTT, the bridge stores them, the API lists them with
filters and a cursor, and a live connection receives each one as it is stored."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import httpx
import msgspec
import pytest
import redis.asyncio as aioredis

from config import Settings, load_settings
from models.state import LIVE_STREAM_KEY
from tests.integration.api.conftest import ADMIN_NAME, mint_token
from tests.integration.api.live_client import live_client, receive, request
from tests.integration.bridge.conftest import running_bridge

pytestmark = pytest.mark.integration

DEVICE = "truck-ev"


def bridge_settings_for(mqtt_url: str, redis_url: str, database_url: str) -> Settings:
    settings = load_settings(
        {"FLEETBRIDGE_MQTT_URL": mqtt_url, "FLEETBRIDGE_REDIS_URL": redis_url, "FLEETBRIDGE_DATABASE_URL": database_url}
    )
    unique = uuid.uuid4().hex[:8]
    return replace(settings, mqtt=replace(settings.mqtt, client_id=f"bridge-{unique}", share_group=f"g{unique}"))


def event(seq: int, ts: datetime, name: str, **data: Any) -> bytes:
    return msgspec.json.encode({"seq": seq, "ts": ts.isoformat(), "name": name, "data": data})


async def test_events_are_listed_with_filters_and_pushed_live(
    http: httpx.AsyncClient,
    api_url: str,
    api_settings: Settings,
    mqtt_url: str,
    redis_url: str,
    database_url: str,
    redis_client: aioredis.Redis,
) -> None:
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    sent = [
        event(1, start, "ignition", on=True),
        event(2, start + timedelta(seconds=10), "harsh_braking", decel_ms2=6.4),
        event(3, start + timedelta(seconds=20), "ignition", on=False),
    ]
    token = mint_token(api_settings, ADMIN_NAME, "viewer")
    newest = await redis_client.xrevrange(LIVE_STREAM_KEY, count=1)
    entry_id = newest[0][0] if newest else None
    before = entry_id.decode() if isinstance(entry_id, bytes) else "0-0"
    async with (
        running_bridge(bridge_settings_for(mqtt_url, redis_url, database_url)),
        live_client(api_url, token) as ws,
        aiomqtt.Client(host, int(port), identifier=DEVICE, protocol=aiomqtt.ProtocolVersion.V5) as device,
    ):
        await request(ws, devices=[DEVICE])
        for payload in (sent[0], sent[0], *sent[1:]):
            await device.publish(f"fleet/v1/{DEVICE}/events", payload, qos=1)
        pushed: list[dict[str, Any]] = []
        async with asyncio.timeout(15):
            while len(pushed) < 3:
                message = await receive(ws)
                if message["type"] == "event":
                    pushed.append(message)

    # Each stored event once, in the order stored, though the first was published twice.
    assert [(m["device_id"], m["event"]["seq"], m["event"]["name"]) for m in pushed] == [
        (DEVICE, 1, "ignition"),
        (DEVICE, 2, "harsh_braking"),
        (DEVICE, 3, "ignition"),
    ]
    assert pushed[0]["event"]["data"] == {"on": True}

    # A client resuming from before them is replayed the same events, in order, before its `subscribed`.
    async with live_client(api_url, token, since=before) as resumed:
        replayed = [m for m in await request(resumed, devices=[DEVICE]) if m["type"] == "event"]
    assert [m["event"] for m in replayed] == [m["event"] for m in pushed]

    url = f"/api/v1/devices/{DEVICE}/events"
    everything = (await http.get(url)).json()
    assert [item["seq"] for item in everything["items"]] == [3, 2, 1]  # newest first
    assert everything["next_cursor"] is None

    ignitions = (await http.get(url, params={"name": "ignition"})).json()
    assert [(item["seq"], item["data"]) for item in ignitions["items"]] == [(3, {"on": False}), (1, {"on": True})]

    window = {"since": (start + timedelta(seconds=5)).isoformat(), "until": (start + timedelta(seconds=20)).isoformat()}
    assert [item["seq"] for item in (await http.get(url, params=window)).json()["items"]] == [2]

    first = (await http.get(url, params={"limit": 2})).json()
    second = (await http.get(url, params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert [item["seq"] for item in first["items"]] == [3, 2]
    assert [item["seq"] for item in second["items"]] == [1]
    assert second["next_cursor"] is None

    for bad in ({"since": "yesterday"}, {"name": "Ignition"}, {"cursor": "nonsense"}, {"limit": "0"}):
        refused = await http.get(url, params=bad)
        assert refused.status_code == 400, bad
        assert refused.headers["content-type"] == "application/problem+json"
