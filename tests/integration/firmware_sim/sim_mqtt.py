"""Test support for the simulator's integration tests: a raw MQTT subscriber that collects messages."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from paho.mqtt.client import Client, ConnectFlags, MQTTMessage
from paho.mqtt.enums import CallbackAPIVersion, MQTTProtocolVersion
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from firmware_sim.address import parse_broker_url


class RawSubscriber:
    """A plain paho client (QoS 1) collecting every message on its filters, for assertions."""

    def __init__(self, url: str, filters: list[str]) -> None:
        address = parse_broker_url(url)
        self.messages: list[MQTTMessage] = []
        self._filters = filters
        self._changed = threading.Condition()
        self._subscribed = False
        self._client = Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=f"test-subscriber-{time.monotonic_ns()}",
            protocol=MQTTProtocolVersion.MQTTv5,
        )
        self._client.on_connect = self._on_connect
        self._client.on_subscribe = self._on_subscribe
        self._client.on_message = self._on_message
        self._client.connect(address.host, address.port)
        self._client.loop_start()

    def _on_connect(
        self, client: Client, userdata: object, flags: ConnectFlags, reason: ReasonCode, properties: Properties | None
    ) -> None:
        client.subscribe([(f, 1) for f in self._filters])

    def _on_subscribe(
        self, client: Client, userdata: object, mid: int, reasons: list[ReasonCode], properties: Properties | None
    ) -> None:
        with self._changed:
            self._subscribed = True
            self._changed.notify_all()

    def _on_message(self, client: Client, userdata: object, message: MQTTMessage) -> None:
        with self._changed:
            self.messages.append(message)
            self._changed.notify_all()

    def wait_subscribed(self, timeout_s: float = 5.0) -> None:
        with self._changed:
            assert self._changed.wait_for(lambda: self._subscribed, timeout_s), "subscription not confirmed"

    def wait_for(self, predicate: Callable[[list[MQTTMessage]], bool], timeout_s: float = 5.0) -> bool:
        """Wait until `predicate(messages)` holds."""
        with self._changed:
            return self._changed.wait_for(lambda: predicate(list(self.messages)), timeout_s)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()


def publish(url: str, messages: list[tuple[str, bytes]], timeout_s: float = 5.0) -> None:
    """Publish `messages` (topic, payload) at QoS 1 from a client of its own, as the bridge would."""
    address = parse_broker_url(url)
    client = Client(
        callback_api_version=CallbackAPIVersion.VERSION2,
        client_id=f"test-publisher-{time.monotonic_ns()}",
        protocol=MQTTProtocolVersion.MQTTv5,
    )
    client.connect(address.host, address.port)
    client.loop_start()
    try:
        for topic, payload in messages:
            client.publish(topic, payload, qos=1).wait_for_publish(timeout_s)
    finally:
        client.disconnect()
        client.loop_stop()
