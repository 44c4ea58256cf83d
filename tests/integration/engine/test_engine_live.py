"""The whole alert path: a rule added over REST reaches a running engine; the engine's alert reaches live
WebSocket clients; an operator's acknowledgement over REST reaches another client; the condition clears it."""

from __future__ import annotations

import asyncio
import json
import subprocess
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import httpx
import pytest
from websockets.asyncio.client import ClientConnection

from api.server import running
from config import Settings
from tests.integration.api.conftest import mint_token, settings_for
from tests.integration.api.live_client import live_client, receive, request
from tests.integration.bridge.conftest import running_bridge
from tests.integration.engine.scenario import HOT_RULE, Truck, add_rule, broker, publish

pytestmark = pytest.mark.integration


async def next_alert(ws: ClientConnection, event: str, limit_s: float = 30) -> dict[str, Any]:
    """The next `alert` message of kind `event` (other messages skipped)."""
    deadline = asyncio.get_running_loop().time() + limit_s
    while asyncio.get_running_loop().time() < deadline:
        message = await receive(ws)
        if message["type"] == "alert" and message["event"] == event:
            return message["alert"]  # type: ignore[no-any-return]
    raise AssertionError(f"no {event} alert")


async def test_engine_alert_is_acknowledged_over_rest_and_every_live_client_sees_it_clear(
    bridge_settings: Settings,
    redis_url: str,
    database_url: str,
    engine_process: Callable[[str], subprocess.Popen[bytes]],
) -> None:
    engine_process("live")  # running before the rule exists: rules take effect without a restart
    settings = settings_for(redis_url, database_url)
    operator = {"Authorization": f"Bearer {mint_token(settings, 'olga', 'operator')}"}
    viewer = mint_token(settings, "vic", "viewer")
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    truck = Truck(f"truck-{uuid.uuid4().hex[:6]}", start, [90.0] * 5 + [115.0] * 35 + [105.0] * 5 + [95.0] * 25)
    async with (
        running(settings) as api_url,
        httpx.AsyncClient(base_url=api_url, headers=operator, timeout=10) as http,
        live_client(api_url, viewer) as first,
        live_client(api_url, viewer) as second,
        running_bridge(bridge_settings),
    ):
        added = await http.post("/api/v1/rules", json=HOT_RULE)
        assert added.status_code == 201, added.text
        for ws in (first, second):
            await request(ws, devices=[truck.device_id])
        await publish(bridge_settings.mqtt.url, [Truck(truck.device_id, start, truck.values[:40])], per_message=5)
        raised = [await next_alert(ws, "raised") for ws in (first, second)]
        assert raised[0] == raised[1]
        assert (raised[0]["state"], raised[0]["severity"]) == ("active", "critical")
        assert raised[0]["started_at"] == (start + timedelta(seconds=5)).isoformat().replace("+00:00", "Z")

        acked = await http.post(f"/api/v1/alerts/{raised[0]['id']}/acknowledge", json={"comment": "on it"})
        assert acked.status_code == 200, acked.text
        seen = await next_alert(second, "acknowledged")
        assert (seen["state"], seen["acknowledged_by"]) == ("acknowledged", "olga")

        await publish(bridge_settings.mqtt.url, [truck], per_message=5)  # the rest; the first 40 again
        cleared = await next_alert(second, "cleared")
        assert (cleared["state"], cleared["clear_reason"]) == ("cleared", "condition")
        assert cleared["cleared_at"] == (start + timedelta(seconds=65)).isoformat().replace("+00:00", "Z")
        listing = (await http.get("/api/v1/alerts", params={"device": truck.device_id})).json()["items"]
        assert [(a["id"], a["state"], a["acknowledged_by"]) for a in listing] == [(raised[0]["id"], "cleared", "olga")]


async def test_engine_publishes_each_alert_change_on_mqtt_for_integrators(
    bridge_settings: Settings, database_url: str, engine_process: Callable[..., subprocess.Popen[bytes]]
) -> None:
    await add_rule(database_url)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    truck = Truck(f"truck-{uuid.uuid4().hex[:6]}", start, [90.0] * 5 + [115.0] * 35 + [95.0] * 25)
    host, port = broker(bridge_settings.mqtt.url)
    notices: list[dict[str, Any]] = []
    async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as integrator:
        await integrator.subscribe(f"fleet/v1/{truck.device_id}/alerts", qos=1)
        engine_process("publisher", bridge_settings.mqtt.url)
        async with running_bridge(bridge_settings):
            await publish(bridge_settings.mqtt.url, [truck], per_message=5)
            async with asyncio.timeout(30):
                async for message in integrator.messages:
                    notices.append(json.loads(bytes(message.payload)))  # type: ignore[arg-type]
                    if notices[-1]["event"] == "cleared":
                        break
    assert [(n["event"], n["state"]) for n in notices] == [("raised", "cleared"), ("cleared", "cleared")]
    assert notices[0]["alert_id"] == notices[1]["alert_id"]
    assert notices[0]["event_id"] < notices[1]["event_id"]
    assert (notices[1]["severity"], notices[1]["clear_reason"]) == ("critical", "condition")
    assert notices[1]["started_at"] == (start + timedelta(seconds=5)).isoformat().replace("+00:00", "Z")
