"""The simulated fleet against a real Mosquitto: delivery, presence with a Last Will, and resending."""

from __future__ import annotations

import itertools
import os
import signal
import time
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

import msgspec
import pytest
from paho.mqtt.client import MQTTMessage

from firmware_sim.address import parse_broker_url
from firmware_sim.device import DeviceOptions
from firmware_sim.fleet import Fleet, FleetOptions
from firmware_sim.truck import READINGS_PER_SAMPLE
from models.events import Status
from models.state import Persisted, PersistedRange, RejectedNotice
from models.telemetry import DecodedTelemetry, Limits, decode_telemetry
from models.topics import TopicKind, device_topic, parse, wildcard
from stack.process import ServerProcess
from tests.integration.firmware_sim.sim_mqtt import RawSubscriber, publish

pytestmark = pytest.mark.integration

# Reconnect after one second, always: the tests wait for reconnects and must stay short.
FAST_RECONNECT = DeviceOptions(reconnect_min_s=1, reconnect_max_s=1)
_prefixes = itertools.count(1)


def _prefix() -> str:
    """A device id prefix of its own per test: retained statuses outlive a test on a shared broker."""
    return f"sim{next(_prefixes)}-{time.monotonic_ns() % 10**6}-"


def _wait_until(condition: Callable[[], bool], timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.02)
    return condition()


def _statuses(messages: list[MQTTMessage], device_id: str) -> list[str]:
    topic = f"fleet/v1/{device_id}/status"
    return [msgspec.json.decode(m.payload, type=Status).state for m in messages if m.topic == topic]


@pytest.fixture
def fleet_factory() -> Iterator[Callable[[str, FleetOptions], Fleet]]:
    """Started fleets, closed at teardown."""
    fleets: list[Fleet] = []

    def make(url: str, options: FleetOptions) -> Fleet:
        fleet = Fleet(parse_broker_url(url), options)
        fleets.append(fleet)
        fleet.start()
        assert fleet.wait_connected(5.0)
        return fleet

    yield make
    for fleet in fleets:
        fleet.close()


def test_fleet_delivers_every_sample_once_per_device_and_seq(
    mqtt_url: str, raw_subscriber: type[RawSubscriber], fleet_factory: Callable[[str, FleetOptions], Fleet]
) -> None:
    subscriber = raw_subscriber(mqtt_url, [wildcard(TopicKind.TELEMETRY)])
    subscriber.wait_subscribed()
    prefix = _prefix()
    fleet = fleet_factory(
        mqtt_url, FleetOptions(devices=5, rate_hz=100.0, count=20, prefix=prefix, device=FAST_RECONNECT)
    )

    fleet.run()

    assert fleet.wait_acked(5.0)
    expected = {(d.device_id, d.boot, seq) for d in fleet.devices for seq in range(20)}

    def received() -> list[tuple[tuple[str, int, int], bool]]:
        """Every sample of this test's devices received, with the DUP flag of its message."""
        keys: list[tuple[tuple[str, int, int], bool]] = []
        for message in subscriber.messages:
            device_id = parse(message.topic).device_id
            if not device_id.startswith(prefix):
                continue
            decoded = decode_telemetry(
                bytes(message.payload), content_type=None, now=datetime.now(UTC), limits=Limits()
            )
            assert isinstance(decoded, DecodedTelemetry)
            assert decoded.rejections == []
            keys.extend(((device_id, s.boot, s.seq), message.dup) for s in decoded.samples)
        return keys

    assert _wait_until(lambda: {key for key, _ in received()} >= expected, 5.0)
    samples = received()
    assert {key for key, _ in samples} == expected
    # A sample may arrive more than once only as a redelivery the broker marked DUP.
    copies = Counter(key for key, _ in samples)
    redelivered = Counter(key for key, dup in samples if dup)
    assert all(copies[key] - 1 <= redelivered[key] for key in copies)
    stats = fleet.stats()
    assert (stats.published, stats.acked, stats.outbox, stats.resent) == (100, 100, 0, 0)
    assert stats.acked_readings == 100 * READINGS_PER_SAMPLE
    assert all(d.acknowledged() == [PersistedRange(d.boot, 0, 19)] for d in fleet.devices)


def test_fleet_batches_samples_into_telemetry_batches(
    mqtt_url: str, raw_subscriber: type[RawSubscriber], fleet_factory: Callable[[str, FleetOptions], Fleet]
) -> None:
    prefix = _prefix()
    subscriber = raw_subscriber(mqtt_url, [f"fleet/v1/{prefix}0001/telemetry"])
    subscriber.wait_subscribed()
    fleet = fleet_factory(
        mqtt_url, FleetOptions(devices=1, rate_hz=None, count=25, batch=10, prefix=prefix, device=FAST_RECONNECT)
    )

    fleet.run()

    assert fleet.wait_acked(5.0)
    assert subscriber.wait_for(lambda messages: len(messages) >= 3)
    sizes = [len(msgspec.json.decode(m.payload)["samples"]) for m in subscriber.messages]
    assert sizes == [10, 10, 5]
    assert fleet.stats().acked == 25


def test_devices_are_online_retained_and_the_last_will_says_offline(
    mqtt_url: str, raw_subscriber: type[RawSubscriber], fleet_factory: Callable[[str, FleetOptions], Fleet]
) -> None:
    prefix = _prefix()
    fleet = fleet_factory(mqtt_url, FleetOptions(devices=5, rate_hz=1.0, prefix=prefix, device=FAST_RECONNECT))
    ids = [d.device_id for d in fleet.devices]

    # Once every `online` has reached the broker, a subscriber that comes only then gets each of them as a
    # retained message (on a loaded machine a device may still be connecting when the fleet is returned).
    early = raw_subscriber(mqtt_url, [wildcard(TopicKind.STATUS)])
    assert early.wait_for(lambda messages: all(_statuses(messages, i) == ["online"] for i in ids))
    subscriber = raw_subscriber(mqtt_url, [wildcard(TopicKind.STATUS)])
    assert subscriber.wait_for(lambda messages: all(_statuses(messages, i) == ["online"] for i in ids))
    assert all(m.retain for m in subscriber.messages)

    victim = fleet.devices[2]
    assert victim.cut_network()

    # The broker publishes the Will; paho then reconnects by itself and the device is online again.
    assert subscriber.wait_for(
        lambda messages: _statuses(messages, victim.device_id) == ["online", "offline", "online"]
    )
    assert all(_statuses(subscriber.messages, i) == ["online"] for i in ids if i != victim.device_id)
    assert victim.stats().connects == 2

    fleet.close()
    assert subscriber.wait_for(lambda messages: all(_statuses(messages, i)[-1] == "offline" for i in ids))


def test_device_records_what_the_bridge_persisted_and_rejected(
    mqtt_url: str, fleet_factory: Callable[[str, FleetOptions], Fleet]
) -> None:
    fleet = fleet_factory(mqtt_url, FleetOptions(devices=1, prefix=_prefix(), device=FAST_RECONNECT))
    device = fleet.devices[0]
    now = datetime.now(UTC)
    boot = device.boot  # every run of a device without a store is a boot of its own
    persisted = Persisted(ranges=[PersistedRange(boot, 0, 9), PersistedRange(boot, 12, 14)], committed_at=now)
    rejected = RejectedNotice(reason="metric fuel=120 outside 0…100 %", topic="t", received_at=now, seq=11, boot=boot)
    publish(
        mqtt_url,
        [
            (device_topic(device.device_id, TopicKind.PERSISTED), msgspec.json.encode(persisted)),
            (device_topic(device.device_id, TopicKind.REJECTED), msgspec.json.encode(rejected)),
        ],
    )

    assert _wait_until(lambda: device.stats().rejected == 1 and device.stats().persisted == 13, 5.0)
    assert device.persisted() == persisted.ranges
    assert device.rejected() == [rejected]


def test_samples_produced_while_the_broker_is_down_are_published_after_reconnect(
    sim_broker: ServerProcess, fleet_factory: Callable[[str, FleetOptions], Fleet]
) -> None:
    fleet = fleet_factory(sim_broker.url, FleetOptions(devices=3, prefix=_prefix(), device=FAST_RECONNECT))
    t0 = datetime.now(UTC)
    for k in range(10):
        fleet.step_all(t0 + timedelta(seconds=k), 1.0)
    assert fleet.wait_acked(5.0)

    sim_broker.stop()
    assert _wait_until(lambda: not any(d.connected for d in fleet.devices), 5.0)
    for k in range(10, 20):
        fleet.step_all(t0 + timedelta(seconds=k), 1.0)
    offline = fleet.stats()
    assert (offline.deferred, offline.outbox, offline.acked) == (30, 30, 30)

    sim_broker.restart()

    assert fleet.wait_acked(10.0)
    stats = fleet.stats()
    assert (stats.published, stats.acked, stats.outbox, stats.deferred, stats.dropped) == (60, 60, 0, 30, 0)
    assert all(d.acknowledged() == [PersistedRange(d.boot, 0, 19)] for d in fleet.devices)
    assert all(d.stats().connects == 2 for d in fleet.devices)


def test_samples_in_flight_when_the_broker_dies_are_resent_after_reconnect(
    sim_broker: ServerProcess, fleet_factory: Callable[[str, FleetOptions], Fleet]
) -> None:
    fleet = fleet_factory(sim_broker.url, FleetOptions(devices=2, prefix=_prefix(), device=FAST_RECONNECT))
    t0 = datetime.now(UTC)

    # A frozen broker keeps the connections open but acknowledges nothing: the devices publish into them.
    assert sim_broker.pid is not None
    os.kill(sim_broker.pid, signal.SIGSTOP)
    for k in range(5):
        fleet.step_all(t0 + timedelta(seconds=k), 1.0)
    frozen = fleet.stats()
    assert (frozen.published, frozen.acked, frozen.outbox, frozen.deferred) == (10, 0, 10, 0)

    sim_broker.kill()
    sim_broker.restart()

    assert fleet.wait_acked(10.0)
    stats = fleet.stats()
    assert (stats.published, stats.acked, stats.resent, stats.outbox) == (10, 10, 10, 0)
    assert all(d.acknowledged() == [PersistedRange(d.boot, 0, 4)] for d in fleet.devices)
