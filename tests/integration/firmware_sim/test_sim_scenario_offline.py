"""The `offline` scenario against a real Mosquitto: the device leaves with its Last Will published, stays
away while its truck keeps measuring, and comes back to send everything it measured meanwhile."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from paho.mqtt.client import MQTTMessage

from firmware_sim.address import parse_broker_url
from firmware_sim.fleet import Fleet, FleetOptions
from firmware_sim.scenario import Scenario
from models.events import Status
from models.telemetry import DecodedTelemetry, Limits, decode_telemetry
from models.topics import TopicKind, wildcard
from tests.integration.firmware_sim.sim_mqtt import RawSubscriber

pytestmark = pytest.mark.integration


def _statuses(messages: list[MQTTMessage], device_id: str) -> list[str]:
    topic = f"fleet/v1/{device_id}/status"
    return [msgspec.json.decode(m.payload, type=Status).state for m in messages if m.topic == topic]


def _seqs(messages: list[MQTTMessage]) -> list[int]:
    seqs = []
    for message in messages:
        if message.topic.endswith("/telemetry"):
            decoded = decode_telemetry(message.payload, content_type=None, now=datetime.now(UTC), limits=Limits())
            assert isinstance(decoded, DecodedTelemetry)
            seqs += [sample.seq for sample in decoded.samples]
    return seqs


def test_sim_offline_scenario_leaves_with_its_last_will_and_comes_back_with_what_it_measured(
    mqtt_url: str, raw_subscriber: type[RawSubscriber]
) -> None:
    prefix = f"gone{time.monotonic_ns() % 10**6}-"
    # Offline from its third sample (t = 2 s) for 3 s: samples 2, 3 and 4 are measured while it is away.
    options = FleetOptions(devices=2, prefix=prefix, scenarios={0: Scenario("offline", start_s=2, for_s=3)})
    subscriber = raw_subscriber(mqtt_url, [wildcard(TopicKind.STATUS), wildcard(TopicKind.TELEMETRY)])
    subscriber.wait_subscribed()
    fleet = Fleet(parse_broker_url(mqtt_url), options)
    gone, calm = fleet.devices
    start = datetime.now(UTC)
    try:
        fleet.start()
        assert fleet.wait_connected(5.0)
        for i in range(2):
            fleet.step_all(start + timedelta(seconds=i), 1.0)
        fleet.step_all(start + timedelta(seconds=2), 1.0)
        assert gone.gone
        assert subscriber.wait_for(lambda m: _statuses(m, gone.device_id) == ["online", "offline"])
        for i in range(3, 5):
            fleet.step_all(start + timedelta(seconds=i), 1.0)
        assert not gone.connected
        assert gone.stats().deferred == 3
        fleet.step_all(start + timedelta(seconds=5), 1.0)  # back
        assert not gone.gone
        assert fleet.wait_acked(10.0)
        assert subscriber.wait_for(lambda m: _statuses(m, gone.device_id) == ["online", "offline", "online"])
        assert _statuses(subscriber.messages, calm.device_id) == ["online"]
        topic = f"fleet/v1/{gone.device_id}/telemetry"
        # No bridge confirms anything here, so what was sent before it left goes again after the reconnect.
        assert subscriber.wait_for(lambda m: set(_seqs([x for x in m if x.topic == topic])) == set(range(6)))
    finally:
        fleet.close()
