"""The bridge against real Mosquitto, Redis and PostgreSQL: storage, rejection, state and replies."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import msgspec
import psycopg
import pytest
import redis.asyncio as aioredis

from bridge.app import Bridge
from config import Settings
from models.state import DeviceState, Persisted, RejectedNotice, state_from_fields, state_key
from tests.integration.bridge.conftest import running_bridge

pytestmark = pytest.mark.integration


def broker(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("mqtt://").split(":")
    return host, int(port)


def sample(seq: int, ts: datetime, **extra: Any) -> dict[str, Any]:
    return {"seq": seq, "ts": ts.isoformat(), **extra}


async def wait_committed(bridge: Bridge, messages: int, limit_s: float = 20) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while bridge.stats.committed_messages < messages:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"only {bridge.stats.committed_messages} of {messages} messages committed")
        await asyncio.sleep(0.05)


async def test_bridge_stores_valid_samples_and_dead_letters_invalid_ones(bridge_settings: Settings) -> None:
    host, port = broker(bridge_settings.mqtt.url)
    now = datetime.now(UTC).replace(microsecond=0)
    good = [
        sample(n, now - timedelta(seconds=20 - n), pos={"lat": 52.0 + n / 100, "lon": 4.0}, metrics={"fuel": 50 - n})
        for n in range(10)
    ]
    bad_payloads = [
        b"{not json",
        msgspec.json.encode(sample(100, now, metrics={"fuel": 120})),
        msgspec.json.encode(sample(101, now + timedelta(hours=1))),
    ]
    mixed_batch = msgspec.json.encode(
        {"samples": [sample(200, now, metrics={"level": 10}), sample(201, now, pos={"lat": 95, "lon": 0})]}
    )
    async with (
        running_bridge(bridge_settings) as bridge,
        aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as device,
    ):
        await device.subscribe("fleet/v1/dev-a/+", qos=1)
        payloads = [
            msgspec.json.encode(good[0]),
            *bad_payloads[:1],
            *[msgspec.json.encode(s) for s in good[1:5]],
            *bad_payloads[1:],
            mixed_batch,
            *[msgspec.json.encode(s) for s in good[5:]],
        ]
        for payload in payloads:
            await device.publish("fleet/v1/dev-a/telemetry", payload, qos=1)
        await wait_committed(bridge, len(payloads))
        replies: dict[str, list[bytes]] = {"persisted": [], "rejected": []}
        with_timeout = asyncio.timeout(10)
        async with with_timeout:
            async for message in device.messages:
                kind = str(message.topic).rsplit("/", 1)[1]
                if kind in replies:
                    replies[kind].append(bytes(message.payload))  # type: ignore[arg-type]
                persisted_seqs = {
                    seq
                    for payload in replies["persisted"]
                    for r in msgspec.json.decode(payload, type=Persisted).ranges
                    for seq in range(r.first, r.last + 1)
                }
                if len(replies["rejected"]) >= 4 and persisted_seqs >= {*range(10), 200}:
                    break

    with psycopg.connect(bridge_settings.database.url) as conn:
        stored = conn.execute("SELECT seq FROM telemetry WHERE device_id = 'dev-a' ORDER BY seq").fetchall()
        assert [row[0] for row in stored] == [*range(10), 200]
        dead = conn.execute("SELECT reason, sample_index, seq FROM rejected_messages ORDER BY id").fetchall()
        reasons = sorted(reason.split(":")[0] if "JSON" in reason else reason.split(" ")[0] for reason, _, _ in dead)
        assert len(dead) == 4, dead
        assert {seq for _, _, seq in dead} == {None, 100, 101, 201}
        assert any("not valid JSON" in r for r, _, _ in dead)
        assert any("outside" in r and "fuel" in r for r, _, _ in dead)
        assert any("future" in r for r, _, _ in dead)
        assert any(idx == 1 and "lat" in r for r, idx, _ in dead)
        assert reasons
        last_seen = conn.execute("SELECT last_seen FROM devices WHERE id = 'dev-a'").fetchone()
        assert last_seen is not None
        assert last_seen[0] is not None
    notices = [msgspec.json.decode(p, type=RejectedNotice) for p in replies["rejected"]]
    assert {n.seq for n in notices} == {None, 100, 101, 201}


async def test_bridge_state_is_newest_by_device_time_even_when_samples_arrive_late(bridge_settings: Settings) -> None:
    host, port = broker(bridge_settings.mqtt.url)
    now = datetime.now(UTC).replace(microsecond=0)
    async with (
        running_bridge(bridge_settings) as bridge,
        aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as device,
    ):
        await device.publish(
            "fleet/v1/dev-b/telemetry",
            msgspec.json.encode(sample(2, now, pos={"lat": 10.0, "lon": 20.0}, metrics={"fuel": 30})),
            qos=1,
        )
        await wait_committed(bridge, 1)
        # A store-and-forward backlog arrives after the live sample: it must not move the truck back.
        await device.publish(
            "fleet/v1/dev-b/telemetry",
            msgspec.json.encode(
                sample(1, now - timedelta(minutes=5), pos={"lat": 11.0, "lon": 21.0}, metrics={"fuel": 35, "level": 80})
            ),
            qos=1,
        )
        await wait_committed(bridge, 2)
        await asyncio.sleep(0.3)
    client = aioredis.Redis.from_url(bridge_settings.redis.url)
    try:
        state = state_from_fields("dev-b", await client.hgetall(state_key("dev-b")))  # type: ignore[misc]
        live = await client.xrange("fleet:live")
        geo = await client.geopos("fleet:geo", "dev-b")
    finally:
        await client.aclose()
    assert state.position is not None
    assert (state.position.lat, state.position.lon, state.position.seq) == (10.0, 20.0, 2)
    assert state.metrics["fuel"].value == 30
    assert state.metrics["level"].value == 80  # the late sample still fills what the newer one lacked
    # Other tests' devices may show up too (their retained statuses on the shared broker): count dev-b's.
    # The late sample's position and fuel reach live clients as a correction; its level as a change.
    assert [fields[b"k"] for _, fields in live if fields[b"d"] == b"dev-b"] == [
        b"state",
        b"presence",
        b"state",
        b"correction",
    ]
    assert geo[0] is not None
    assert abs(geo[0][1] - 10.0) < 1e-4


async def test_bridge_republishes_the_normalised_state_retained_for_integrators(bridge_settings: Settings) -> None:
    host, port = broker(bridge_settings.mqtt.url)
    device_id = f"ret-{bridge_settings.mqtt.client_id[-8:]}"
    now = datetime.now(UTC).replace(microsecond=0)
    async with (
        running_bridge(bridge_settings) as bridge,
        aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as device,
    ):
        for seq in range(3):
            sample = {
                "seq": seq,
                "ts": (now + timedelta(seconds=seq)).isoformat(),
                "pos": {"lat": 50.0 + seq, "lon": 8.0},
            }
            await device.publish(f"fleet/v1/{device_id}/telemetry", msgspec.json.encode(sample), qos=1)
        await wait_committed(bridge, 3)
    # After the bridge is gone, a new subscriber still gets the newest state: it was retained.
    async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as integrator:
        await integrator.subscribe(f"fleet/v1/{device_id}/state", qos=1)
        async with asyncio.timeout(10):
            message = await anext(integrator.messages)
    assert message.retain
    state = msgspec.json.decode(bytes(message.payload), type=DeviceState)  # type: ignore[arg-type]
    assert state.device_id == device_id
    assert state.position is not None
    assert (state.position.seq, state.position.lat) == (2, 52.0)
    assert state.presence is not None
    assert state.presence.state == "online"
