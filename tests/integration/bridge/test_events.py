"""Device events through the bridge against real Mosquitto, Redis and PostgreSQL: stored once, refusals
kept with their reason, confirmed on `persisted`, and announced on the live stream once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import msgspec
import psycopg
import pytest
import redis.asyncio as aioredis

from config import Settings
from firmware_sim.address import parse_broker_url
from firmware_sim.device import Device, DeviceOptions
from models.events import StoredEvent
from models.state import LIVE_STREAM_KEY, Persisted, RejectedNotice
from tests.integration.bridge.conftest import running_bridge
from tests.integration.bridge.test_pipeline import broker, wait_committed

pytestmark = pytest.mark.integration


def event(seq: int, ts: datetime, name: str, **data: Any) -> bytes:
    return msgspec.json.encode({"seq": seq, "ts": ts.isoformat(), "name": name, "boot": 1, "data": data})


async def test_events_are_stored_once_and_a_malformed_one_is_kept_with_its_reason(bridge_settings: Settings) -> None:
    host, port = broker(bridge_settings.mqtt.url)
    now = datetime.now(UTC).replace(microsecond=0)
    ignition = event(1, now - timedelta(seconds=3), "ignition", on=True)
    malformed = b'{"seq": 2, "ts": "yesterday", "name": "harsh_braking"}'
    braking = event(3, now - timedelta(seconds=1), "harsh_braking", decel_ms2=6.4)
    async with (
        running_bridge(bridge_settings) as bridge,
        aiomqtt.Client(host, port, identifier="ev-1", protocol=aiomqtt.ProtocolVersion.V5) as device,
    ):
        await device.subscribe("fleet/v1/ev-1/+", qos=1)
        for payload in (ignition, ignition, malformed, braking):
            await device.publish("fleet/v1/ev-1/events", payload, qos=1)
        await wait_committed(bridge, 4)
        confirmed: set[tuple[int, int]] = set()
        notices: list[RejectedNotice] = []
        async with asyncio.timeout(10):
            async for message in device.messages:
                payload = bytes(message.payload)  # type: ignore[arg-type]
                if str(message.topic).endswith("/persisted"):
                    persisted = msgspec.json.decode(payload, type=Persisted)
                    assert persisted.ranges == []  # events are never confirmed as samples
                    confirmed |= {(r.boot, s) for r in persisted.events for s in range(r.first, r.last + 1)}
                elif str(message.topic).endswith("/rejected"):
                    notices.append(msgspec.json.decode(payload, type=RejectedNotice))
                if confirmed >= {(1, 1), (1, 3)} and notices:
                    break
        assert bridge.stats.inserted_events == 2

    assert confirmed == {(1, 1), (1, 3)}
    (notice,) = notices
    assert notice.topic == "fleet/v1/ev-1/events"
    assert "not a valid JSON event" in notice.reason
    with psycopg.connect(bridge_settings.database.url) as conn:
        stored = conn.execute(
            "SELECT seq, boot, name, data FROM events WHERE device_id = 'ev-1' ORDER BY ts"
        ).fetchall()
        dead = conn.execute(
            "SELECT topic, device_id, reason, payload FROM rejected_messages WHERE device_id = 'ev-1'"
        ).fetchall()
        registered = conn.execute("SELECT last_seen IS NOT NULL FROM devices WHERE id = 'ev-1'").fetchone()
    assert stored == [(1, 1, "ignition", {"on": True}), (3, 1, "harsh_braking", {"decel_ms2": 6.4})]
    ((topic, device_id, reason, payload),) = dead
    assert (topic, device_id, bytes(payload)) == ("fleet/v1/ev-1/events", "ev-1", malformed)
    assert reason == notice.reason
    assert registered == (True,)  # an event is a sign of life, like telemetry

    redis = aioredis.Redis.from_url(bridge_settings.redis.url)
    try:
        entries = await redis.xrange(LIVE_STREAM_KEY)
    finally:
        await redis.aclose()
    announced = [
        msgspec.json.decode(fields[b"e"], type=StoredEvent)
        for _, fields in entries
        if fields.get(b"k") == b"event" and fields.get(b"d") == b"ev-1"
    ]
    assert [(e.seq, e.name) for e in announced] == [(1, "ignition"), (3, "harsh_braking")]


async def test_the_simulated_device_keeps_its_events_until_confirmed_or_refused(bridge_settings: Settings) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    options = DeviceOptions(reconnect_min_s=1, reconnect_max_s=1, persist_timeout_s=5)
    device = Device("ev-sim", parse_broker_url(bridge_settings.mqtt.url), options)
    async with running_bridge(bridge_settings):
        device.connect()
        try:
            assert await asyncio.to_thread(device.wait_connected, 10)
            device.send_event("ignition", now - timedelta(seconds=2), {"on": True})
            device.send_event("harsh_braking", now + timedelta(hours=1), {"decel_ms2": 4.0})  # refused: future
            device.send_event("ignition", now, {"on": False})
            assert await asyncio.to_thread(device.wait_events_persisted, 15)
            refusals = [notice.reason for notice in device.rejected() if notice.topic.endswith("/events")]
        finally:
            await asyncio.to_thread(device.close, 2.0)

    assert len(refusals) == 1
    assert "in the future" in refusals[0]
    with psycopg.connect(bridge_settings.database.url) as conn:
        stored = conn.execute("SELECT name, data FROM events WHERE device_id = 'ev-sim' ORDER BY ts").fetchall()
    assert stored == [("ignition", {"on": True}), ("ignition", {"on": False})]
