"""Presence end to end: a device whose link dies without DISCONNECT is offline, by REST and live."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime
from typing import Any

import httpx
import msgspec
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from models.events import Status
from tests.e2e.conftest import LiveWatcher, eventually

pytestmark = pytest.mark.e2e

KEEPALIVE_S = 2


def connect_device(mqtt_url: str, device_id: str) -> mqtt.Client:
    """A device with `offline` as its Last Will that says `online` and sends one sample."""
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
    status_topic = f"fleet/v1/{device_id}/status"
    client.will_set(status_topic, msgspec.json.encode(Status(state="offline")), qos=1, retain=True)
    client.connect(host, int(port), keepalive=KEEPALIVE_S)
    client.loop_start()
    client.publish(
        status_topic, msgspec.json.encode(Status(state="online", ts=datetime.now(UTC))), 1, True
    ).wait_for_publish(5)
    sample = {"seq": 0, "ts": datetime.now(UTC).isoformat(), "pos": {"lat": 52.5, "lon": 13.4}}
    client.publish(f"fleet/v1/{device_id}/telemetry", msgspec.json.encode(sample), 1).wait_for_publish(5)
    return client


def clear_retained_status(mqtt_url: str, device_id: str) -> None:
    """Remove the retained status, so later tests' bridges do not meet this device."""
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, protocol=mqtt.MQTTv5)
    client.connect(host, int(port))
    client.loop_start()
    client.publish(f"fleet/v1/{device_id}/status", b"", 1, True).wait_for_publish(5)
    client.disconnect()
    client.loop_stop()


async def presence(http: httpx.AsyncClient, device_id: str) -> dict[str, Any] | None:
    response = await http.get(f"/api/v1/devices/{device_id}/state")
    if response.status_code != 200:
        return None
    found: dict[str, Any] | None = response.json().get("presence")
    return found


async def test_device_whose_link_dies_is_offline_within_the_keepalive_window(
    mqtt_url: str,
    http: httpx.AsyncClient,
    watch_live: Callable[[list[str]], AbstractAsyncContextManager[LiveWatcher]],
) -> None:
    device_id = f"pres-{uuid.uuid4().hex[:8]}"
    async with watch_live([device_id]) as live:
        client = connect_device(mqtt_url, device_id)
        try:
            online = await eventually(
                lambda: presence(http, device_id),
                lambda p: p is not None and p["state"] == "online",
                timeout_s=10,
                what="the device online by REST",
            )
            assert online is not None
            assert online["source"] == "status"
            client.loop_stop()  # the device's network thread dies with its link: no DISCONNECT, no reconnect
            cut_at = time.monotonic()
            sock = client.socket()
            assert sock is not None
            sock.close()
            offline = await eventually(
                lambda: presence(http, device_id),
                lambda p: p is not None and p["state"] == "offline",
                timeout_s=KEEPALIVE_S * 1.5 + 5,
                what="the device offline by REST",
            )
            noticed_s = time.monotonic() - cut_at
        finally:
            client.loop_stop()
            clear_retained_status(mqtt_url, device_id)
        assert offline is not None
        assert offline["source"] == "status"  # the broker published its Last Will
        assert noticed_s <= KEEPALIVE_S * 1.5 + 5

        async def live_presence() -> dict[str, Any] | None:
            return live.last_presence.get(device_id)

        pushed = await eventually(
            live_presence, lambda p: p is not None and p["state"] == "offline", timeout_s=5, what="offline pushed live"
        )
        assert pushed == offline
        assert live.unexpected == []
