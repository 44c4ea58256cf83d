"""Late samples end to end: the state keeps the newer values, and live clients receive a correction."""

from __future__ import annotations

import uuid
from collections.abc import Callable
from contextlib import AbstractAsyncContextManager
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import msgspec
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.e2e.conftest import LiveWatcher, eventually

pytestmark = pytest.mark.e2e


def send(mqtt_url: str, device_id: str, samples: list[dict[str, Any]]) -> None:
    """Publish each sample as its own telemetry message, QoS 1, in this order."""
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=device_id, protocol=mqtt.MQTTv5)
    client.connect(host, int(port))
    client.loop_start()
    try:
        for sample in samples:
            client.publish(f"fleet/v1/{device_id}/telemetry", msgspec.json.encode(sample), 1).wait_for_publish(5)
    finally:
        client.disconnect()
        client.loop_stop()


async def test_late_sample_reaches_live_clients_as_a_correction_and_leaves_the_state_alone(
    http: httpx.AsyncClient,
    mqtt_url: str,
    watch_live: Callable[[list[str]], AbstractAsyncContextManager[LiveWatcher]],
) -> None:
    device_id = f"e2e-late-{uuid.uuid4().hex[:8]}"
    now = datetime.now(UTC).replace(microsecond=0)
    late_ts = now - timedelta(minutes=5)

    async with watch_live([device_id]) as live:
        send(mqtt_url, device_id, [{"seq": 2, "ts": now.isoformat(), "metrics": {"fuel": 30.0}}])
        await eventually(lambda: _ready(live.updates[device_id]), bool, timeout_s=10, what="the newer sample live")
        send(mqtt_url, device_id, [{"seq": 1, "ts": late_ts.isoformat(), "metrics": {"fuel": 35.0}}])
        corrections = await eventually(
            lambda: _ready(live.corrections[device_id]), bool, timeout_s=10, what="the late sample as a correction"
        )
        state = (await http.get(f"/api/v1/devices/{device_id}/state")).json()

    (correction,) = corrections
    assert correction["metrics"]["fuel"]["value"] == 35.0
    assert correction["metrics"]["fuel"]["seq"] == 1
    assert correction["metrics"]["fuel"]["ts"] == late_ts.isoformat().replace("+00:00", "Z")
    assert state["metrics"]["fuel"]["value"] == 30.0  # the state was not regressed
    assert live.unexpected == []


async def _ready(value: Any) -> Any:
    return value
