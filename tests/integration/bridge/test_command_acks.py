"""Command acknowledgements through the bridge against real Mosquitto and PostgreSQL: each state recorded
once and only forward, never for another device's command, a malformed answer dead-lettered with its
reason, and an answer sent while no bridge runs recorded when one comes back."""

from __future__ import annotations

import asyncio
import uuid
from typing import Any

import aiomqtt
import msgspec
import psycopg
import pytest

from config import Settings
from tests.integration.bridge.conftest import running_bridge
from tests.integration.bridge.test_pipeline import broker, wait_committed

pytestmark = pytest.mark.integration


def ack(command_id: str, status: str, **result: Any) -> bytes:
    return msgspec.json.encode({"id": command_id, "status": status, "result": result})


def make_command(conn: psycopg.Connection[Any], device_id: str, state: str = "sent") -> str:
    command_id = str(uuid.uuid4())
    conn.execute(
        "INSERT INTO commands (id, device_id, name, state, created_by, expires_at, sent_at)"
        " VALUES (%s, %s, 'ping', %s, 'tester', now() + interval '1 hour', now())",
        (command_id, device_id, state),
    )
    conn.execute(
        "INSERT INTO command_events (command_id, state) VALUES (%s, 'queued'), (%s, 'sent')", (command_id, command_id)
    )
    return command_id


def recorded(url: str, command_id: str) -> tuple[str, bool, Any, list[str]]:
    with psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT state, received_at IS NOT NULL, result FROM commands WHERE id = %s", (command_id,)
        ).fetchone()
        events = conn.execute(
            "SELECT state FROM command_events WHERE command_id = %s ORDER BY id", (command_id,)
        ).fetchall()
    assert row is not None
    return row[0], row[1], row[2], [e[0] for e in events]


async def test_acks_are_recorded_once_forward_only_and_only_for_the_devices_own_commands(
    bridge_settings: Settings,
) -> None:
    url = bridge_settings.database.url
    mine, theirs = f"ack-{uuid.uuid4().hex[:6]}", f"ack-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO devices (id) VALUES (%s), (%s)", (mine, theirs))
        done, late, other = make_command(conn, mine), make_command(conn, mine), make_command(conn, theirs)
    malformed = b'{"id": "not-a-command-id", "status": "succeeded"}'
    host, port = broker(bridge_settings.mqtt.url)
    async with (
        running_bridge(bridge_settings) as bridge,
        aiomqtt.Client(host, port, identifier=mine, protocol=aiomqtt.ProtocolVersion.V5) as device,
    ):
        topic = f"fleet/v1/{mine}/cmd/ack"
        answers = [
            ack(done, "received"),
            ack(done, "received"),  # a redelivery
            ack(done, "succeeded", pong="t"),
            ack(late, "succeeded", n=1),  # the result overtook `received`
            ack(late, "received"),
            ack(other, "succeeded"),  # for another device's command: changes nothing
            malformed,
        ]
        for payload in answers:
            await device.publish(topic, payload, qos=1)
        await wait_committed(bridge, len(answers))

    assert recorded(url, done) == ("succeeded", True, {"pong": "t"}, ["queued", "sent", "received", "succeeded"])
    state, _, result, events = recorded(url, late)
    assert (state, result) == ("succeeded", {"n": 1})  # never moved back to `received`
    assert sorted(events) == ["queued", "received", "sent", "succeeded"]
    assert recorded(url, other) == ("sent", False, None, ["queued", "sent"])
    with psycopg.connect(url) as conn:
        dead = conn.execute("SELECT reason FROM rejected_messages WHERE device_id = %s", (mine,)).fetchall()
    assert [reason for (reason,) in dead] == [
        "invalid command acknowledgement: id 'not-a-command-id' is not a command id"
    ]


async def test_an_ack_sent_while_no_bridge_runs_is_recorded_when_one_comes_back(bridge_settings: Settings) -> None:
    url = bridge_settings.database.url
    device_id = f"ack-{uuid.uuid4().hex[:6]}"
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("INSERT INTO devices (id) VALUES (%s)", (device_id,))
        command_id = make_command(conn, device_id)
    async with running_bridge(bridge_settings):
        pass  # the bridge's persistent session now exists on the broker
    host, port = broker(bridge_settings.mqtt.url)
    async with aiomqtt.Client(host, port, identifier=device_id, protocol=aiomqtt.ProtocolVersion.V5) as device:
        await device.publish(f"fleet/v1/{device_id}/cmd/ack", ack(command_id, "succeeded", ok=True), qos=1)
    await asyncio.sleep(0.5)
    assert recorded(url, command_id)[0] == "sent", "no bridge ran: nothing recorded yet"
    async with running_bridge(bridge_settings) as bridge:  # the same client id: its session's queue
        await wait_committed(bridge, 1)
    assert recorded(url, command_id) == ("succeeded", False, {"ok": True}, ["queued", "sent", "succeeded"])
