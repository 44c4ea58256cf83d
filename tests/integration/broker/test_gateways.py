"""A gateway on a real Mosquitto: it publishes for the devices of its own site, and for no other device.

The gateway's rights come from `devices.gateway_id` through the rendered ACL (broker/acl.py); each
attempt is paired with a listener that would hear it, so "nothing arrived" means "refused".
"""

from __future__ import annotations

import time

import pytest

from broker import accounts
from broker.accounts import Credential, DeviceSpec
from firmware_sim.address import parse_broker_url
from firmware_sim.gateway import Gateway, GatewayOptions
from firmware_sim.site import gateway_id, site_sensors
from tests.integration.broker.conftest import NOT_AUTHORIZED, SUCCESS, TIMEOUT_S, Fleet

pytestmark = pytest.mark.integration


def _gateway_with_child(fleet: Fleet) -> tuple[Credential, Credential]:
    """Gateway gw (site north) with one child sensor; fleet.b stays a device of another site."""
    gateway, child = accounts.import_devices(
        fleet.conn,
        [DeviceSpec(f"gw-{fleet.suffix}", kind="gateway"), DeviceSpec(f"vib-{fleet.suffix}", kind="vibration")],
    )
    fleet.conn.execute("UPDATE devices SET site = %s WHERE id = %s", (f"north-{fleet.suffix}", gateway.username))
    fleet.conn.execute("UPDATE devices SET gateway_id = %s WHERE id = %s", (gateway.username, child.username))
    fleet.broker.apply(fleet.conn)
    return gateway, child


@pytest.mark.parametrize("kind", ["telemetry", "events", "status"])
def test_gateway_publishes_for_its_own_child_and_not_for_another_sites_device(fleet: Fleet, kind: str) -> None:
    gateway, child = _gateway_with_child(fleet)
    reader = fleet.connected(fleet.bridge)
    reader.subscribe(f"fleet/v1/+/{kind}")
    gw = fleet.connected(gateway)

    mine = gw.publish(fleet.topic(child, kind), b"for my child")
    forged = gw.publish(fleet.topic(fleet.b, kind), b"for another site")
    own = gw.publish(fleet.topic(gateway, kind), b"for itself")

    assert (mine, forged, own) == (SUCCESS, NOT_AUTHORIZED, SUCCESS)
    assert reader.next_message() == (fleet.topic(child, kind), b"for my child")
    assert reader.next_message() == (fleet.topic(gateway, kind), b"for itself")
    assert reader.received() == []


def test_gateway_hears_what_the_bridge_persisted_for_its_child_only(fleet: Fleet) -> None:
    gateway, child = _gateway_with_child(fleet)
    gw = fleet.connected(gateway)
    gw.subscribe("fleet/v1/+/persisted")
    bridge = fleet.connected(fleet.bridge)

    bridge.publish(fleet.topic(fleet.b, "persisted"), b"other")
    bridge.publish(fleet.topic(child, "persisted"), b"mine")

    assert gw.received() == [(fleet.topic(child, "persisted"), b"mine")]


def test_gateway_may_not_cmd_or_ack_for_its_child(fleet: Fleet) -> None:
    gateway, child = _gateway_with_child(fleet)
    gw = fleet.connected(gateway)

    assert gw.publish(fleet.topic(child, "cmd/ack"), b"x") == NOT_AUTHORIZED
    assert gw.publish(fleet.topic(child, "state"), b"x") == NOT_AUTHORIZED


def test_a_child_moved_away_or_a_gateway_changed_kind_takes_the_rights_with_it(fleet: Fleet) -> None:
    gateway, child = _gateway_with_child(fleet)
    fleet.conn.execute("UPDATE devices SET kind = 'sensor' WHERE id = %s", (gateway.username,))
    fleet.broker.apply(fleet.conn)
    gw = fleet.connected(gateway)

    assert gw.publish(fleet.topic(child, "telemetry"), b"x") == NOT_AUTHORIZED


def test_the_simulated_gateway_publishes_for_its_registered_sensors_and_is_refused_for_the_others(
    fleet: Fleet,
) -> None:
    site = f"s{fleet.suffix}"
    sensors = site_sensors(site)
    registered = [s.device_id for s in sensors if s.kind != "flow"]  # the flow sensor is not under the gateway
    gateway_account, *_ = accounts.import_devices(
        fleet.conn, [DeviceSpec(gateway_id(site), kind="gateway"), *(DeviceSpec(s.device_id) for s in sensors)]
    )
    fleet.conn.execute("UPDATE devices SET gateway_id = %s WHERE id = ANY(%s)", (gateway_account.username, registered))
    fleet.broker.apply(fleet.conn)
    reader = fleet.connected(fleet.bridge)
    reader.subscribe("fleet/v1/+/telemetry")
    gateway = Gateway(
        parse_broker_url(f"mqtt://127.0.0.1:{fleet.broker.server.port}"),
        GatewayOptions(site=site, password=gateway_account.secret, persist_timeout_s=600),
    )
    gateway.start()
    try:
        assert gateway.wait_connected(TIMEOUT_S)
        time.sleep(3)
    finally:
        gateway.close(timeout_s=1)

    stats = gateway.stats()
    senders = {topic.split("/")[2] for topic, _ in reader.received()}
    assert senders == {s.device_id for s in sensors if s.kind in {"vibration", "pressure", "temperature"}} | (
        senders & {f"{site}-level-1"}  # a level sensor's first window may not have closed yet
    )
    assert stats.refused >= 2  # the flow sensor's windows, answered 0x87
    assert stats.acked >= 6
