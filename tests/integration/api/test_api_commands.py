"""Commands end to end on real servers: the API stores and sends them (MQTT 5, with their expiry), a
simulated truck obeys and answers, the bridge records the answers durably, and REST and the live
WebSocket show every transition."""

from __future__ import annotations

import asyncio
import threading
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from dataclasses import replace
from typing import Any

import httpx
import psycopg
import pytest

from api.server import running
from config import Settings, load_settings
from firmware_sim.address import parse_broker_url
from firmware_sim.commands import FlakyAcks
from firmware_sim.device import Device, DeviceOptions
from firmware_sim.fleet import Fleet, FleetOptions
from tests.integration.api.conftest import ADMIN_NAME, add_account, log_in, mint_token
from tests.integration.api.live_client import live_client, receive, request
from tests.integration.bridge.conftest import running_bridge

pytestmark = pytest.mark.integration

WAIT_S = 20.0
_CLIENTS: list[httpx.AsyncClient] = []


def bridge_settings_for(mqtt_url: str, redis_url: str, database_url: str) -> Settings:
    settings = load_settings(
        {"FLEETBRIDGE_MQTT_URL": mqtt_url, "FLEETBRIDGE_REDIS_URL": redis_url, "FLEETBRIDGE_DATABASE_URL": database_url}
    )
    unique = uuid.uuid4().hex[:8]
    return replace(settings, mqtt=replace(settings.mqtt, client_id=f"bridge-{unique}", share_group=f"g{unique}"))


def unique_prefix(name: str) -> str:
    return f"{name}{uuid.uuid4().hex[:6]}-"


@asynccontextmanager
async def stack(api_settings: Settings, mqtt_url: str, redis_url: str, database_url: str) -> AsyncIterator[str]:
    """A bridge and an API instance with its broker account: the whole command path."""
    settings = replace(
        api_settings,
        api=replace(api_settings.api, mqtt_url=mqtt_url),
        commands=replace(api_settings.commands, dispatch_interval_s=0.1),
    )
    async with running_bridge(bridge_settings_for(mqtt_url, redis_url, database_url)), running(settings) as url:
        try:
            yield url
        finally:
            # A test that failed half-way leaves its clients open: closed here, not left to a later test.
            while _CLIENTS:
                await _CLIENTS.pop().aclose()


@contextmanager
def fleet_running(mqtt_url: str, options: FleetOptions) -> Iterator[Fleet]:
    fleet = Fleet(parse_broker_url(mqtt_url), options)
    runner = threading.Thread(target=fleet.run, daemon=True)
    try:
        fleet.start()
        assert fleet.wait_connected(10.0)
        runner.start()
        yield fleet
    finally:
        fleet.close()
        runner.join(10)


async def wait_for(http: httpx.AsyncClient, path: str, done: Any, timeout_s: float = WAIT_S) -> dict[str, Any]:
    """GET `path` until `done(body)`; the last body."""
    deadline = time.monotonic() + timeout_s
    while True:
        body = (await http.get(path)).json()
        if done(body) or time.monotonic() > deadline:
            return body
        await asyncio.sleep(0.1)


async def online(http: httpx.AsyncClient, device_id: str) -> None:
    def is_online(body: dict[str, Any]) -> bool:
        return (body.get("presence") or {}).get("state") == "online"

    body = await wait_for(http, f"/api/v1/devices/{device_id}", is_online)
    assert is_online(body), body


async def admin_client(api_url: str, database_url: str) -> httpx.AsyncClient:
    """An admin's client of the stack's API, closed when `stack` ends."""
    await add_account(database_url, ADMIN_NAME, "admin")
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as anonymous:
        token = await log_in(anonymous, ADMIN_NAME)
    client = httpx.AsyncClient(base_url=api_url, timeout=10, headers={"Authorization": f"Bearer {token}"})
    _CLIENTS.append(client)
    return client


def states(command: dict[str, Any]) -> list[str]:
    return [t["state"] for t in command["transitions"]]


async def test_a_command_reaches_a_truck_and_its_answers_reach_rest_and_the_live_socket(
    api_settings: Settings, mqtt_url: str, redis_url: str, database_url: str
) -> None:
    prefix = unique_prefix("cmd")
    device_id = f"{prefix}0001"
    async with stack(api_settings, mqtt_url, redis_url, database_url) as api_url:
        http = await admin_client(api_url, database_url)
        with fleet_running(mqtt_url, FleetOptions(devices=1, prefix=prefix, rate_hz=5.0)) as fleet:
            await online(http, device_id)
            token = mint_token(api_settings, "watcher", "viewer")
            async with live_client(api_url, token) as ws:
                await request(ws, devices=[device_id])
                key = {"Idempotency-Key": "ping-1"}
                made = await http.post(f"/api/v1/devices/{device_id}/commands", json={"name": "ping"}, headers=key)
                assert made.status_code == 201, made.text
                command = made.json()
                pushed: list[str] = []
                async with asyncio.timeout(WAIT_S):
                    while "succeeded" not in pushed:
                        message = await receive(ws)
                        if message["type"] == "command" and message["command"]["id"] == command["id"]:
                            pushed.append(message["state"])

            done = await wait_for(http, f"/api/v1/commands/{command['id']}", lambda b: b["state"] == "succeeded")
            assert done["state"] == "succeeded"
            assert states(done) == ["queued", "sent", "received", "succeeded"]
            assert "pong" in done["result"]
            assert done["attempts"] == 1
            # Every transition pushed live, once each, none conflated away.
            assert sorted(pushed) == sorted(["queued", "sent", "received", "succeeded"])

            # The same key again: the same command, not a second one.
            again = await http.post(f"/api/v1/devices/{device_id}/commands", json={"name": "ping"}, headers=key)
            assert again.status_code == 200
            assert again.headers["idempotent-replayed"] == "true"
            assert again.json()["id"] == command["id"]
            other = await http.post(f"/api/v1/devices/{device_id}/commands", json={"name": "reboot"}, headers=key)
            assert other.status_code == 422
            assert command["id"] in other.json()["detail"]

            # The truck obeys: its report interval changes.
            made = await http.post(
                f"/api/v1/devices/{device_id}/commands",
                json={"name": "set_report_interval", "args": {"interval_s": 2}},
            )
            interval = await wait_for(
                http, f"/api/v1/commands/{made.json()['id']}", lambda b: b["state"] == "succeeded"
            )
            assert interval["state"] == "succeeded"
            assert fleet.report_interval_s(device_id) == 2.0
            listed = (await http.get(f"/api/v1/devices/{device_id}/commands")).json()
            assert [c["name"] for c in listed["items"]] == ["set_report_interval", "ping"]
            # Each command received once by the device itself, though the ping was asked for twice.
            assert [c.name for c in fleet.devices[0].received_commands()] == ["ping", "set_report_interval"]
        await http.aclose()


async def test_bad_commands_are_refused_with_reasons(
    api_settings: Settings, mqtt_url: str, redis_url: str, database_url: str
) -> None:
    device_id = f"{unique_prefix('bad')}1"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO devices (id, kind) VALUES (%s, 'pump')", (device_id,))
    async with stack(api_settings, mqtt_url, redis_url, database_url) as api_url:
        http = await admin_client(api_url, database_url)
        url = f"/api/v1/devices/{device_id}/commands"
        cases = {
            "unknown": ({"name": "self_destruct"}, "unknown command"),
            "kind": ({"name": "immobilise"}, "does not obey"),
            "arg type": ({"name": "set_report_interval", "args": {"interval_s": "5"}}, "must be an integer"),
            "arg range": ({"name": "set_report_interval", "args": {"interval_s": 0}}, "at least 1"),
            "missing arg": ({"name": "set_report_interval"}, "needs the argument"),
            "extra arg": ({"name": "ping", "args": {"loud": True}}, "takes no argument"),
            "past": ({"name": "ping", "expires_at": "2020-01-01T00:00:00Z"}, "in the past"),
            "too far": ({"name": "ping", "expires_in_s": 10**8}, "commands.max_expiry_s"),
        }
        for case, (body, reason) in cases.items():
            refused = await http.post(url, json=body)
            assert refused.status_code == 400, case
            assert refused.headers["content-type"] == "application/problem+json"
            assert reason in refused.json()["detail"], (case, refused.json())
        assert (await http.post("/api/v1/devices/nobody-here/commands", json={"name": "ping"})).status_code == 404
        viewer = mint_token(api_settings, "looker", "viewer")
        refused = await http.post(url, json={"name": "ping"}, headers={"Authorization": f"Bearer {viewer}"})
        assert refused.status_code == 403
        listed = (await http.get(url)).json()
        assert listed["items"] == [], "nothing refused was stored"
        await http.aclose()


async def test_a_dangerous_command_to_an_offline_truck_is_refused_and_never_delivered_later(
    api_settings: Settings, mqtt_url: str, redis_url: str, database_url: str
) -> None:
    device_id = f"{unique_prefix('stolen')}1"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO devices (id, kind, presence, presence_source, presence_since)"
            " VALUES (%s, 'truck', 'offline', 'status', now())",
            (device_id,),
        )
    async with stack(api_settings, mqtt_url, redis_url, database_url) as api_url:
        http = await admin_client(api_url, database_url)
        refused = await http.post(f"/api/v1/devices/{device_id}/commands", json={"name": "immobilise"})
        assert refused.status_code == 409
        assert refused.json()["presence"]["state"] == "offline"
        device = Device(device_id, parse_broker_url(mqtt_url))
        device.connect()
        try:
            assert device.wait_connected(10)
            await online(http, device_id)
            await asyncio.sleep(1.0)  # several dispatch rounds with the device online
            assert device.received_commands() == []
        finally:
            device.close()
        assert (await http.get(f"/api/v1/devices/{device_id}/commands")).json()["items"] == []
        await http.aclose()


async def test_a_command_that_expires_while_its_device_is_away_never_reaches_it_and_a_live_one_does(
    api_settings: Settings, mqtt_url: str, redis_url: str, database_url: str
) -> None:
    device_id = f"{unique_prefix('away')}1"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO devices (id, kind) VALUES (%s, 'truck')", (device_id,))
    async with stack(api_settings, mqtt_url, redis_url, database_url) as api_url:
        http = await admin_client(api_url, database_url)
        url = f"/api/v1/devices/{device_id}/commands"
        stale = (await http.post(url, json={"name": "ping", "expires_in_s": 1})).json()
        fresh = (await http.post(url, json={"name": "ping", "expires_in_s": 300})).json()
        assert (stale["state"], fresh["state"]) == ("queued", "queued")
        expired = await wait_for(http, f"/api/v1/commands/{stale['id']}", lambda b: b["state"] == "expired")
        assert states(expired) == ["queued", "expired"]

        # Cancelling: only while queued.
        cancelled = await http.post(url, json={"name": "reboot"})
        assert (await http.post(f"/api/v1/commands/{cancelled.json()['id']}/cancel")).json()["state"] == "cancelled"

        device = Device(device_id, parse_broker_url(mqtt_url))
        device.connect()
        try:
            assert device.wait_connected(10)
            delivered = await wait_for(http, f"/api/v1/commands/{fresh['id']}", lambda b: b["state"] == "succeeded")
            assert states(delivered) == ["queued", "sent", "received", "succeeded"]
            await asyncio.sleep(0.5)
            # The device's own record: only the live command, never the expired or the cancelled one.
            assert [c.id for c in device.received_commands()] == [fresh["id"]]
        finally:
            device.close()
        refused = await http.post(f"/api/v1/commands/{fresh['id']}/cancel")
        assert refused.status_code == 409
        await http.aclose()


async def test_a_device_that_never_answers_leaves_its_command_sent_until_it_expires(
    api_settings: Settings, mqtt_url: str, redis_url: str, database_url: str
) -> None:
    device_id = f"{unique_prefix('mute')}1"
    async with stack(api_settings, mqtt_url, redis_url, database_url) as api_url:
        http = await admin_client(api_url, database_url)
        device = Device(device_id, parse_broker_url(mqtt_url), DeviceOptions(flaky_acks=FlakyAcks(loss=1.0)))
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute("INSERT INTO devices (id, kind) VALUES (%s, 'truck')", (device_id,))
        device.connect()
        try:
            assert device.wait_connected(10)
            await online(http, device_id)
            made = (
                await http.post(f"/api/v1/devices/{device_id}/commands", json={"name": "ping", "expires_in_s": 2})
            ).json()
            assert made["state"] == "sent"
            ended = await wait_for(http, f"/api/v1/commands/{made['id']}", lambda b: b["state"] == "expired")
            # Received by the device (its own record says so), never confirmed: expired, not "delivered".
            assert states(ended) == ["queued", "sent", "expired"]
            assert [c.id for c in device.received_commands()] == [made["id"]]
        finally:
            device.close()
        await http.aclose()


async def test_a_reboot_brings_the_truck_back_with_a_new_boot_and_every_sample_stored_once(
    api_settings: Settings, mqtt_url: str, redis_url: str, database_url: str
) -> None:
    prefix = unique_prefix("boot")
    device_id = f"{prefix}0001"
    async with stack(api_settings, mqtt_url, redis_url, database_url) as api_url:
        http = await admin_client(api_url, database_url)
        with fleet_running(mqtt_url, FleetOptions(devices=1, prefix=prefix, rate_hz=10.0)) as fleet:
            await online(http, device_id)
            first_boot = fleet.devices[0].boot
            await asyncio.sleep(1.0)
            made = (await http.post(f"/api/v1/devices/{device_id}/commands", json={"name": "reboot"})).json()
            done = await wait_for(http, f"/api/v1/commands/{made['id']}", lambda b: b["state"] == "succeeded")
            assert done["state"] == "succeeded", done
            new_boot = done["result"]["boot"]
            assert new_boot > first_boot
            await asyncio.sleep(1.5)
            fleet.stop()
            await asyncio.to_thread(fleet.flush)
            assert await asyncio.to_thread(fleet.wait_persisted, WAIT_S)
            produced = fleet.stats().produced
        async with await psycopg.AsyncConnection.connect(database_url) as conn:
            rows = await (
                await conn.execute(
                    "SELECT boot, count(*), count(DISTINCT seq), min(seq), max(seq) FROM telemetry"
                    " WHERE device_id = %s GROUP BY boot ORDER BY boot",
                    (device_id,),
                )
            ).fetchall()
        assert [row[0] for row in rows] == [first_boot, new_boot]
        for boot, count, distinct, low, high in rows:
            assert count == distinct == high - low + 1, (boot, rows)  # no gap, no duplicate
        assert rows[1][3] == 0, "the new boot counts seq from zero"
        assert sum(row[1] for row in rows) == produced
        await http.aclose()
