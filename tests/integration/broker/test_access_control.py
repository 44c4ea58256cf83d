"""Attacks on a real Mosquitto 2.0 running the rendered password and ACL files: every one must fail.

Each attack is a real attempt by a real MQTT 5 client, and each is paired with the legitimate action
on the same topic, so that "nothing arrived" means "refused", not "nobody was listening". Reason codes
are what Mosquitto 2.0.11 answers: CONNACK and PUBACK 0x87 (Not authorized); SUBACK grants every filter,
because 2.0.11 checks reads when it delivers, not when a client subscribes.
"""

from __future__ import annotations

import pytest

from broker import accounts
from broker.accounts import Credential, DeviceSpec
from broker.passwords import new_secret
from tests.integration.broker.conftest import (
    ACCEPTED,
    GRANTED_QOS_1,
    NOT_AUTHORIZED,
    SILENCE_S,
    SUCCESS,
    TIMEOUT_S,
    AccountBroker,
    Fleet,
    Probe,
)

pytestmark = pytest.mark.integration

SHARED_TELEMETRY = "$share/fleetbridge/fleet/v1/+/telemetry"


# --- who may connect -------------------------------------------------------------------------------


def test_anonymous_connect_is_refused(account_broker: AccountBroker) -> None:
    probe = Probe(account_broker.server.port)
    try:
        assert probe.connect() == NOT_AUTHORIZED
    finally:
        probe.close()


def test_wrong_secrets_and_unknown_users_are_refused(fleet: Fleet) -> None:
    attempts = {
        "wrong secret": Credential(fleet.a.username, new_secret()),
        "another device's secret": Credential(fleet.a.username, fleet.b.secret),
        "unknown user": Credential(f"ghost-{fleet.suffix}", fleet.a.secret),
        "empty secret": Credential(fleet.a.username, ""),
    }

    answers = {what: fleet.probe(credential).connect() for what, credential in attempts.items()}

    assert answers == dict.fromkeys(attempts, NOT_AUTHORIZED)
    assert fleet.probe(fleet.a).connect() == SUCCESS, "the right secret still works"


# --- devices stay in their own topics --------------------------------------------------------------


@pytest.mark.parametrize("kind", ["telemetry", "events", "status", "cmd/ack", "config/reported"])
def test_device_cannot_publish_on_another_devices_topic(fleet: Fleet, kind: str) -> None:
    # The account that reads `kind` for every device listens; then the impostor, then the owner publish.
    reader = fleet.connected(fleet.api if kind == "config/reported" else fleet.bridge)
    reader.subscribe(f"fleet/v1/+/{kind}")
    impostor, owner = fleet.connected(fleet.a), fleet.connected(fleet.b)

    forged = impostor.publish(fleet.topic(fleet.b, kind), b"forged")
    genuine = owner.publish(fleet.topic(fleet.b, kind), b"genuine")

    assert (forged, genuine) == (NOT_AUTHORIZED, SUCCESS)
    assert reader.next_message() == (fleet.topic(fleet.b, kind), b"genuine")
    assert reader.received() == []


@pytest.mark.parametrize("kind", ["state", "alerts", "persisted", "rejected", "cmd", "config"])
def test_device_cannot_forge_what_the_bridge_or_api_say_even_about_itself(fleet: Fleet, kind: str) -> None:
    # Only the device itself reads its persisted, rejected and cmd: it listens on the connection it
    # forges with (a second connection of its account would end the first: client id = user name).
    device = fleet.connected(fleet.a)
    listener = fleet.connected(fleet.integrator) if kind in {"state", "alerts"} else device
    listener.subscribe(fleet.topic(fleet.a, kind))

    assert device.publish(fleet.topic(fleet.a, kind), b"forged") == NOT_AUTHORIZED
    assert listener.received() == []


def test_device_reads_only_its_own_twin_config_and_reports_on_its_own_topic(fleet: Fleet) -> None:
    spy, owner, api = fleet.connected(fleet.a), fleet.connected(fleet.b), fleet.connected(fleet.api)
    owner.subscribe(fleet.topic(fleet.b, "config"))
    spy.subscribe(fleet.topic(fleet.b, "config"), "fleet/v1/+/config")
    api.subscribe("fleet/v1/+/config/reported")

    assert api.publish(fleet.topic(fleet.b, "config"), b"desired") == SUCCESS
    assert owner.publish(fleet.topic(fleet.b, "config/reported"), b"applied") == SUCCESS

    assert owner.next_message() == (fleet.topic(fleet.b, "config"), b"desired")
    assert api.next_message() == (fleet.topic(fleet.b, "config/reported"), b"applied")
    assert spy.received() == []


def test_device_cannot_read_another_devices_commands(fleet: Fleet) -> None:
    spy, owner, api = fleet.connected(fleet.a), fleet.connected(fleet.b), fleet.connected(fleet.api)
    owner.subscribe(fleet.topic(fleet.b, "cmd"))

    codes = spy.subscribe(fleet.topic(fleet.b, "cmd"), "fleet/v1/+/cmd", "#")
    assert api.publish(fleet.topic(fleet.b, "cmd"), b"unlock") == SUCCESS

    assert owner.next_message() == (fleet.topic(fleet.b, "cmd"), b"unlock")
    assert spy.received() == []
    # Mosquitto 2.0.11 grants the SUBSCRIBE and filters each delivery; a broker refusing it is fine too.
    assert codes in ([GRANTED_QOS_1] * 3, [NOT_AUTHORIZED] * 3)


def test_device_does_not_get_another_devices_retained_status(fleet: Fleet) -> None:
    owner = fleet.connected(fleet.b)
    assert owner.publish(fleet.topic(fleet.b, "status"), b"online", retain=True) in ACCEPTED
    watcher = fleet.connected(fleet.integrator)
    watcher.subscribe(fleet.topic(fleet.b, "status"))
    assert watcher.next_message() == (fleet.topic(fleet.b, "status"), b"online"), "it is retained"

    spy = fleet.connected(fleet.a)
    spy.subscribe(fleet.topic(fleet.b, "status"))

    assert spy.received() == []


# --- services and integrators stay in their roles --------------------------------------------------


def test_integrator_cannot_publish_anything(fleet: Fleet) -> None:
    device = fleet.connected(fleet.a)
    device.subscribe(fleet.topic(fleet.a, "cmd"), fleet.topic(fleet.a, "persisted"))
    bridge = fleet.connected(fleet.bridge)  # subscribes to everything, but reads only what the bridge may
    bridge.subscribe(f"fleet/v1/{fleet.a.username}/#", f"fleet/v1/{fleet.integrator.username}/#")
    integrator = fleet.connected(fleet.integrator)
    integrator.subscribe(fleet.topic(fleet.a, "state"))  # it may read state: a forged one would come back
    topics = [
        fleet.topic(fleet.a, "cmd"),
        fleet.topic(fleet.a, "persisted"),
        fleet.topic(fleet.a, "telemetry"),
        fleet.topic(fleet.a, "state"),
        # Its own name as a device id: the pattern lines would allow it, its `deny` line must not.
        f"fleet/v1/{fleet.integrator.username}/telemetry",
    ]

    answers = [integrator.publish(topic, b"x") for topic in topics]

    assert answers == [NOT_AUTHORIZED] * len(topics)
    assert device.received() == []
    assert bridge.received() == []
    assert integrator.received() == []


@pytest.mark.parametrize("service", ["bridge", "api"])
def test_service_cannot_act_as_a_device_named_like_it(fleet: Fleet, service: str) -> None:
    credential = fleet.bridge if service == "bridge" else fleet.api
    bridge = fleet.connected(fleet.bridge_2)  # another instance's account: it would see a forged sample
    bridge.subscribe("fleet/v1/+/telemetry")
    account = fleet.connected(credential)

    assert account.publish(f"fleet/v1/{credential.username}/telemetry", b"x") == NOT_AUTHORIZED
    assert bridge.received() == []


def test_api_forwards_telemetry_for_any_device_and_reads_the_replies_but_cannot_forge_them(fleet: Fleet) -> None:
    # HTTP ingest: the API publishes on a device's telemetry topic (after checking that device's own
    # secret) and waits for the bridge's persisted / rejected replies; it must not write those itself.
    bridge = fleet.connected(fleet.bridge)
    bridge.subscribe("fleet/v1/+/telemetry")
    api = fleet.connected(fleet.api)
    api.subscribe("fleet/v1/+/persisted", "fleet/v1/+/rejected", "fleet/v1/+/state")

    forwarded = [api.publish(fleet.topic(device, "telemetry"), b"sample") for device in (fleet.a, fleet.b)]
    replies = [bridge.publish(fleet.topic(fleet.a, kind), kind.encode()) for kind in ("persisted", "rejected")]
    forged = [api.publish(fleet.topic(fleet.a, kind), b"forged") for kind in ("persisted", "rejected", "state")]
    assert bridge.publish(fleet.topic(fleet.a, "state"), b"{}") == SUCCESS

    assert forwarded == [SUCCESS, SUCCESS]
    assert replies == [SUCCESS, SUCCESS]
    assert forged == [NOT_AUTHORIZED] * 3
    assert sorted(bridge.received(1.0)) == sorted(
        (fleet.topic(device, "telemetry"), b"sample") for device in (fleet.a, fleet.b)
    )
    # It reads the replies it needs, and not the state it has no grant for.
    assert sorted(api.received(1.0)) == [
        (fleet.topic(fleet.a, "persisted"), b"persisted"),
        (fleet.topic(fleet.a, "rejected"), b"rejected"),
    ]


def test_grouped_integrator_reads_only_its_groups_devices(fleet: Fleet) -> None:
    north = fleet.connected(fleet.north_integrator)
    everyone = fleet.connected(fleet.integrator)
    for probe in (north, everyone):
        probe.subscribe("fleet/v1/+/state")
    bridge = fleet.connected(fleet.bridge)

    for device in (fleet.a, fleet.b):
        assert bridge.publish(fleet.topic(device, "state"), device.username.encode()) == SUCCESS

    assert sorted(everyone.received(1.0)) == sorted(
        [
            (fleet.topic(fleet.a, "state"), fleet.a.username.encode()),
            (fleet.topic(fleet.b, "state"), fleet.b.username.encode()),
        ]
    )
    assert north.received() == [(fleet.topic(fleet.a, "state"), fleet.a.username.encode())]


# --- revoking, rotating and disabling take effect at the reload ------------------------------------


def test_revoked_device_is_disconnected_and_cannot_reconnect(fleet: Fleet) -> None:
    pid = fleet.broker.server.pid
    revoked, bystander = fleet.connected(fleet.a), fleet.connected(fleet.b)

    assert accounts.revoke(fleet.conn, fleet.a.username)
    fleet.broker.apply(fleet.conn)

    assert revoked.lost.wait(TIMEOUT_S), "the reload must end the revoked device's connection"
    assert fleet.probe(fleet.a).connect() == NOT_AUTHORIZED
    assert not bystander.lost.is_set()
    assert bystander.publish(fleet.topic(fleet.b, "telemetry"), b"still here") in ACCEPTED
    assert (fleet.broker.server.pid, fleet.broker.server.alive) == (pid, True)


def test_rotated_secret_replaces_the_old_one_at_the_reload(fleet: Fleet) -> None:
    old_connection = fleet.connected(fleet.a)

    new = accounts.rotate(fleet.conn, fleet.a.username)
    fleet.broker.apply(fleet.conn)

    assert old_connection.lost.wait(TIMEOUT_S), "a connection made with the old secret ends at the reload"
    assert fleet.probe(fleet.a).connect() == NOT_AUTHORIZED
    assert fleet.probe(new).connect() == SUCCESS


def test_disabled_device_is_refused_until_enabled_with_the_same_secret(fleet: Fleet) -> None:
    connection = fleet.connected(fleet.a)

    accounts.set_device_disabled(fleet.conn, fleet.a.username, True)
    fleet.broker.apply(fleet.conn)
    assert connection.lost.wait(TIMEOUT_S)
    assert fleet.probe(fleet.a).connect() == NOT_AUTHORIZED

    accounts.set_device_disabled(fleet.conn, fleet.a.username, False)
    fleet.broker.apply(fleet.conn)
    assert fleet.probe(fleet.a).connect() == SUCCESS


def test_new_device_is_usable_right_after_the_reload_without_a_restart(fleet: Fleet) -> None:
    server = fleet.broker.server
    pid, log_before = server.pid, server.log_path.read_text()
    bridge = fleet.connected(fleet.bridge)
    bridge.subscribe(SHARED_TELEMETRY)

    (new,) = accounts.import_devices(fleet.conn, [DeviceSpec(f"c-{fleet.suffix}")])
    fleet.broker.apply(fleet.conn)
    device = fleet.connected(new)  # the first attempt, right after the reload was logged

    assert device.publish(fleet.topic(new, "telemetry"), b"hello") == SUCCESS
    assert bridge.next_message() == (fleet.topic(new, "telemetry"), b"hello")
    assert (server.pid, server.alive) == (pid, True)
    started = "running"  # Mosquitto logs "mosquitto version 2.0.11 running" once per start
    assert server.log_path.read_text().count(started) == log_before.count(started)


def test_device_cannot_end_another_devices_connection_by_reusing_its_client_id(fleet: Fleet) -> None:
    victim = fleet.connected(fleet.b, client_id=fleet.b.username)
    victim.subscribe(fleet.topic(fleet.b, "cmd"))

    fleet.connected(fleet.a, client_id=fleet.b.username)

    assert not victim.lost.wait(SILENCE_S), "the broker must not end b's connection for a's CONNECT"
    api = fleet.connected(fleet.api)
    assert api.publish(fleet.topic(fleet.b, "cmd"), b"still yours") == SUCCESS
    assert victim.next_message() == (fleet.topic(fleet.b, "cmd"), b"still yours")


def test_device_cannot_take_over_the_bridges_session_by_using_its_client_id(fleet: Fleet) -> None:
    bridge = fleet.connected(fleet.bridge, client_id=fleet.bridge.username)
    bridge.subscribe(SHARED_TELEMETRY)

    # The bridge's client id is no secret (it is in its logs and its stats key).
    intruder = fleet.connected(fleet.a, client_id=fleet.bridge.username)

    assert not bridge.lost.wait(SILENCE_S), "the bridge's connection (and its session) must survive"
    assert intruder.publish(fleet.topic(fleet.a, "telemetry"), b"mine") == SUCCESS
    assert bridge.next_message() == (fleet.topic(fleet.a, "telemetry"), b"mine")
    assert intruder.received() == [], "the intruder got none of the bridge's session"


def test_second_connection_of_one_account_replaces_its_first_whatever_client_ids_they_give(fleet: Fleet) -> None:
    # The price of binding client ids to user names: two bridge or API instances sharing one account
    # would end each other's connections in turn, so each instance needs an account of its own.
    first = fleet.connected(fleet.bridge, client_id="instance-1")
    bystander = fleet.connected(fleet.bridge_2, client_id="instance-2")

    fleet.connected(fleet.bridge, client_id="instance-3")

    assert first.lost.wait(TIMEOUT_S), "one account, one client id: the older connection ends"
    assert not bystander.lost.is_set(), "an instance with its own account is unaffected"


# --- what the accounts are for ---------------------------------------------------------------------


def test_bridge_reads_every_devices_telemetry_through_a_shared_subscription(fleet: Fleet) -> None:
    bridge = fleet.connected(fleet.bridge)
    assert bridge.subscribe(SHARED_TELEMETRY) == [GRANTED_QOS_1]

    for device in (fleet.a, fleet.b):
        assert fleet.connected(device).publish(fleet.topic(device, "telemetry"), device.username.encode()) == SUCCESS

    assert sorted(bridge.received(1.0)) == sorted(
        (fleet.topic(device, "telemetry"), device.username.encode()) for device in (fleet.a, fleet.b)
    )


def test_device_gets_its_commands_and_the_bridges_replies_and_acknowledges_to_the_bridge_only(fleet: Fleet) -> None:
    device = fleet.connected(fleet.a)
    device.subscribe(fleet.topic(fleet.a, "cmd"), fleet.topic(fleet.a, "persisted"), fleet.topic(fleet.a, "rejected"))
    api, bridge = fleet.connected(fleet.api), fleet.connected(fleet.bridge)
    # Acknowledgements are the bridge's to record (durably, once): the API is not given them.
    api.subscribe("fleet/v1/+/cmd/ack")
    bridge.subscribe("fleet/v1/+/cmd/ack")

    assert api.publish(fleet.topic(fleet.a, "cmd"), b"ping") == SUCCESS
    assert bridge.publish(fleet.topic(fleet.a, "persisted"), b"1-10") == SUCCESS
    assert bridge.publish(fleet.topic(fleet.a, "rejected"), b"why") == SUCCESS
    assert device.publish(fleet.topic(fleet.a, "cmd/ack"), b"pong") == SUCCESS

    assert sorted(device.received(1.0)) == [
        (fleet.topic(fleet.a, "cmd"), b"ping"),
        (fleet.topic(fleet.a, "persisted"), b"1-10"),
        (fleet.topic(fleet.a, "rejected"), b"why"),
    ]
    assert bridge.next_message() == (fleet.topic(fleet.a, "cmd/ack"), b"pong")
    assert api.received(0.5) == []


def test_engine_publishes_alerts_and_can_neither_read_telemetry_nor_speak_for_the_bridge(fleet: Fleet) -> None:
    engine, device = fleet.connected(fleet.engine), fleet.connected(fleet.a)
    engine.subscribe("fleet/v1/+/telemetry", "fleet/v1/+/status")
    assert device.publish(fleet.topic(fleet.a, "telemetry"), b"{}") in ACCEPTED
    assert device.publish(fleet.topic(fleet.a, "status"), b"online", retain=True) in ACCEPTED
    for kind in ("state", "persisted", "rejected", "cmd", "telemetry"):
        assert engine.publish(fleet.topic(fleet.a, kind), b"forged") == NOT_AUTHORIZED
    # The bridge, for its part, no longer has the right to write alerts.
    assert fleet.connected(fleet.bridge).publish(fleet.topic(fleet.a, "alerts"), b"x") == NOT_AUTHORIZED
    assert engine.received() == []


def test_integrator_reads_state_alerts_and_status(fleet: Fleet) -> None:
    bridge, device, engine = fleet.connected(fleet.bridge), fleet.connected(fleet.a), fleet.connected(fleet.engine)
    assert bridge.publish(fleet.topic(fleet.a, "state"), b"{}", retain=True) in ACCEPTED
    assert device.publish(fleet.topic(fleet.a, "status"), b"online", retain=True) in ACCEPTED
    integrator = fleet.connected(fleet.integrator)

    integrator.subscribe("fleet/v1/+/state", "fleet/v1/+/alerts", "fleet/v1/+/status")
    assert engine.publish(fleet.topic(fleet.a, "alerts"), b"overheat") == SUCCESS

    got = integrator.received(1.0)
    assert (fleet.topic(fleet.a, "state"), b"{}") in got
    assert (fleet.topic(fleet.a, "status"), b"online") in got
    assert (fleet.topic(fleet.a, "alerts"), b"overheat") in got
