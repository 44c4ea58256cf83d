"""One presence on every route: `/devices/{id}/state`, `/devices?status=` and `/groups` agree.

A device that sends telemetry and never a status (every HTTP-ingest device) is online on all three,
and after its silence the sweep marks it offline on all three. The sweep decides in one statement, so
telemetry committed while it runs can never leave its device offline.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import httpx
import msgspec
import psycopg
import pytest

from bridge.sink import PostgresTelemetrySink
from config import load_settings
from tests.integration.bridge.conftest import running_bridge

pytestmark = pytest.mark.integration

PRESENCE_TIMEOUT_S = 2  # the smallest the setting allows: the test waits this long for silence
WAIT_S = 15.0


async def _eventually(probe: Callable[[], Awaitable[Any]], what: str) -> Any:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + WAIT_S
    while True:
        found = await probe()
        if found:
            return found
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.1)


async def _presence_everywhere(http: httpx.AsyncClient, device: str, group: str) -> tuple[str | None, str, int]:
    """(state from `/state`, the `status` filter that lists the device, the group's online count)."""
    state = (await http.get(f"/api/v1/devices/{device}/state")).json().get("presence") or {}
    listed = ""
    for status in ("online", "offline", "unknown"):
        page = (await http.get("/api/v1/devices", params={"status": status, "group": group})).json()
        if any(item["id"] == device for item in page["items"]):
            listed = status
    groups = (await http.get("/api/v1/groups")).json()["items"]
    online = next(g["online"] for g in groups if g["name"] == group)
    return state.get("state"), listed, online


async def test_a_device_sending_only_telemetry_is_online_then_offline_on_every_route(
    http: httpx.AsyncClient, mqtt_url: str, redis_url: str, database_url: str
) -> None:
    device, group = f"ingest-{uuid.uuid4().hex[:8]}", f"g-{uuid.uuid4().hex[:6]}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO devices (id, group_name) VALUES (%s, %s)", (device, group))
    settings = load_settings(
        {
            "FLEETBRIDGE_MQTT_URL": mqtt_url,
            "FLEETBRIDGE_REDIS_URL": redis_url,
            "FLEETBRIDGE_DATABASE_URL": database_url,
            "FLEETBRIDGE_BRIDGE_PRESENCE_TIMEOUT_S": str(PRESENCE_TIMEOUT_S),
        }
    )
    settings = replace(
        settings,
        mqtt=replace(settings.mqtt, client_id=f"bridge-{uuid.uuid4().hex[:8]}", share_group=f"g{uuid.uuid4().hex[:8]}"),
    )
    async with running_bridge(settings):
        host, port = mqtt_url.removeprefix("mqtt://").split(":")
        async with aiomqtt.Client(host, int(port), protocol=aiomqtt.ProtocolVersion.V5) as client:
            sample = {"seq": 0, "ts": datetime.now(UTC).isoformat(), "metrics": {"fuel": 40}}
            await client.publish(f"fleet/v1/{device}/telemetry", msgspec.json.encode(sample), qos=1)

        async def online() -> bool:
            return await _presence_everywhere(http, device, group) == ("online", "online", 1)

        await _eventually(online, "online on /state, /devices?status=online and /groups")

        async def offline() -> bool:
            return await _presence_everywhere(http, device, group) == ("offline", "offline", 0)

        await _eventually(offline, "offline on all three after the silence")


async def test_presence_sweep_leaves_online_a_device_whose_telemetry_is_being_committed(database_url: str) -> None:
    device = f"race-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC)
    long_ago = now - timedelta(minutes=10)
    cutoff = now - timedelta(seconds=90)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO devices (id, last_seen, presence, presence_source, presence_since)"
            " VALUES (%s, %s, 'online', 'heartbeat', %s)",
            (device, long_ago, long_ago),
        )
    sink = PostgresTelemetrySink(database_url)
    await sink.connect()
    try:
        # A batch with the device's telemetry holds its row, as the bridge's batch transaction does: the
        # sweep leaves that device alone rather than judging it by the `last_seen` about to change.
        async with await psycopg.AsyncConnection.connect(database_url) as batch:
            await batch.execute("UPDATE devices SET last_seen = %s WHERE id = %s", (now, device))
            # Bounded: a sweep that waited for the row here would wait for ever (the batch commits below).
            assert await asyncio.wait_for(sink.sweep_presence(cutoff=cutoff, now=now), WAIT_S) == []
            await batch.commit()
        assert await sink.sweep_presence(cutoff=cutoff, now=now) == [], "its telemetry is recent now"
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            cur = await conn.execute("SELECT presence FROM devices WHERE id = %s", (device,))
            assert await cur.fetchone() == ("online",)

        # Silent past a later cutoff, the same sweep does mark it offline.
        marked = await sink.sweep_presence(cutoff=now + timedelta(seconds=1), now=now + timedelta(seconds=91))
        assert [(u.device_id, u.state, u.source) for u in marked] == [(device, "offline", "heartbeat")]
    finally:
        await sink.close()
