"""What a device and the broker hear when the bridge refuses a message, against the real Mosquitto.

The bridge answers a message refused whole with PUBACK 0x99 (Payload format invalid) and the reason as
the MQTT 5 Reason String, once its dead letter is committed; a message only partly refused gets 0x00.
The device's own PUBACK comes from Mosquitto, which does not pass the subscriber's reason on: it says
success for any authorised publish that a subscriber took. (Asserted here, since docs/topics.md tells
device makers so: the device learns the reason on `rejected`, over HTTP ingest, or from the REST listing.)
"""

from __future__ import annotations

import asyncio
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, datetime

import msgspec
import paho.mqtt.client as paho
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from config import Settings
from tests.integration.bridge.conftest import running_bridge
from tests.integration.bridge.mqtt_tap import MqttTap
from tests.integration.bridge.test_pipeline import broker

pytestmark = pytest.mark.integration

PAYLOAD_FORMAT_INVALID = 0x99
TIMEOUT_S = 20


@dataclass(frozen=True, slots=True)
class DevicePuback:
    """The PUBACK a publishing device received from the broker."""

    code: int
    reason: str | None


class Mqtt5Device:
    """A paho MQTT 5 client, as firmware SDKs are: it reports each PUBACK's reason code and string."""

    def __init__(self, host: str, port: int) -> None:
        self._client = paho.Client(
            CallbackAPIVersion.VERSION2, client_id=f"dev-{uuid.uuid4().hex[:8]}", protocol=paho.MQTTv5
        )
        self._pubacks: dict[int, DevicePuback] = {}
        self._arrived = threading.Condition()
        self._client.on_publish = self._on_publish
        self._client.connect(host, port)
        self._client.loop_start()

    def _on_publish(
        self, client: paho.Client, userdata: object, mid: int, reason: ReasonCode, properties: Properties
    ) -> None:
        text = getattr(properties, "ReasonString", None)
        with self._arrived:
            self._pubacks[mid] = DevicePuback(reason.value, text)
            self._arrived.notify_all()

    def publish(self, topic: str, payload: bytes) -> DevicePuback:
        """Publish at QoS 1 and wait for the broker's PUBACK."""
        info = self._client.publish(topic, payload, qos=1)
        with self._arrived:
            if not self._arrived.wait_for(lambda: info.mid in self._pubacks, timeout=TIMEOUT_S):
                raise AssertionError(f"no PUBACK for {topic}")
            return self._pubacks[info.mid]

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


@pytest.fixture
def device(mqtt_url: str) -> Iterator[Mqtt5Device]:
    client = Mqtt5Device(*broker(mqtt_url))
    yield client
    client.close()


def topic_of(device_id: str) -> str:
    return f"fleet/v1/{device_id}/telemetry"


async def test_bridge_refuses_a_bad_message_with_0x99_and_the_reason_and_the_broker_keeps_it(
    bridge_settings: Settings, device: Mqtt5Device, database_url: str
) -> None:
    host, port = broker(bridge_settings.mqtt.url)
    tap = MqttTap(host, port)
    tap_port = await tap.start()
    settings = replace(bridge_settings, mqtt=replace(bridge_settings.mqtt, url=f"mqtt://127.0.0.1:{tap_port}"))
    run = uuid.uuid4().hex[:8]
    now = datetime.now(UTC)
    good = {"seq": 1, "ts": now.isoformat(), "metrics": {"fuel": 50}}
    bad = {"seq": 2, "ts": now.isoformat(), "metrics": {"fuel": 150}}
    unparseable, all_bad, partial = f"unparseable-{run}", f"all-bad-{run}", f"partial-{run}"
    try:
        async with running_bridge(settings):
            heard = {
                name: await asyncio.to_thread(device.publish, topic_of(name), payload)
                for name, payload in (
                    (unparseable, b"{not json"),
                    (all_bad, msgspec.json.encode({"samples": [bad, {**bad, "seq": 3}]})),
                    (partial, msgspec.json.encode({"samples": [good, bad]})),
                )
            }
            refused = await tap.wait_for(topic_of(unparseable))
            refused_batch = await tap.wait_for(topic_of(all_bad))
            accepted = await tap.wait_for(topic_of(partial))
    finally:
        await tap.close()

    assert refused.code == PAYLOAD_FORMAT_INVALID
    assert refused.reason is not None
    assert refused.reason.startswith("not valid JSON telemetry")
    assert refused_batch.code == PAYLOAD_FORMAT_INVALID
    assert refused_batch.reason is not None
    assert refused_batch.reason.startswith("all 2 samples refused; sample 0: metric fuel=150.0 outside")
    assert (accepted.code, accepted.reason) == (0, None)  # partly stored: the per-sample reason is on `rejected`
    # Mosquitto answers the device itself, before and whatever the bridge says.
    assert set(heard.values()) == {DevicePuback(0, None)}
    with psycopg.connect(database_url) as conn:
        dead = conn.execute(
            "SELECT device_id, count(*) FROM rejected_messages WHERE device_id = ANY(%s) GROUP BY device_id",
            ([unparseable, all_bad, partial],),
        ).fetchall()
    assert dict(dead) == {unparseable: 1, all_bad: 2, partial: 1}
