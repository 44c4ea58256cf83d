"""MQTT over TLS on a real Mosquitto 2.0: the development CA of `broker.certs`, the same accounts as plain MQTT.

This module's broker serves both listeners (it overrides the package's `account_broker`), so the
`fleet` accounts work on either; every client here connects to the TLS port with a password.
"""

from __future__ import annotations

import asyncio
import socket
import ssl
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest

from bridge.message import RawMessage
from bridge.source import MqttSource
from broker.accounts import Credential
from broker.certs import TlsFiles, init_certs
from broker.process import mqtt_answers
from firmware_sim.address import parse_broker_url
from firmware_sim.device import Device, DeviceOptions
from models.telemetry import Sample
from stack.process import LOOPBACK, free_port
from tests.integration.broker.conftest import (
    ACCEPTED,
    GRANTED_QOS_1,
    SUCCESS,
    TIMEOUT_S,
    AccountBroker,
    Fleet,
    Probe,
    running_account_broker,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def certs(servers_dir: Path) -> TlsFiles:
    """A development CA and server certificate, the key readable by the broker's user."""
    return init_certs(servers_dir / f"certs-{uuid.uuid4().hex[:8]}")


@pytest.fixture(scope="module")
def tls_port() -> int:
    """Where this module's broker serves MQTT over TLS."""
    return free_port()


@pytest.fixture(scope="module")
def account_broker(servers_dir: Path, certs: TlsFiles, tls_port: int) -> Iterator[AccountBroker]:
    """The package's account broker, with the TLS listener as well."""
    with running_account_broker(servers_dir, "tls", tls=certs, tls_port=tls_port) as broker:
        yield broker


def _tls_probe(fleet: Fleet, port: int, credential: Credential, ca_file: Path) -> Probe:
    probe = Probe(port, credential)
    probe.client.tls_set(ca_certs=str(ca_file))
    fleet.probes.append(probe)
    return probe


def _mqtts_url(credential: Credential | None, port: int, ca_file: Path) -> str:
    user = f"{credential.username}:{credential.secret}@" if credential is not None else ""
    return f"mqtts://{user}{LOOPBACK}:{port}?cafile={ca_file}"


def test_tls_client_trusting_the_ca_publishes_and_receives_with_a_password(
    fleet: Fleet, certs: TlsFiles, tls_port: int
) -> None:
    bridge = _tls_probe(fleet, tls_port, fleet.bridge, certs.ca_file)
    device = _tls_probe(fleet, tls_port, fleet.a, certs.ca_file)
    assert bridge.connect() == SUCCESS
    assert device.connect() == SUCCESS
    topic = fleet.topic(fleet.a, "telemetry")
    assert bridge.subscribe(topic) == [GRANTED_QOS_1]

    assert device.publish(topic, b"{}") in ACCEPTED

    assert bridge.next_message() == (topic, b"{}")


def test_tls_client_with_a_wrong_password_is_refused(fleet: Fleet, certs: TlsFiles, tls_port: int) -> None:
    wrong = Credential(fleet.a.username, "not-the-secret")

    assert _tls_probe(fleet, tls_port, wrong, certs.ca_file).connect() != SUCCESS


def _handshake(port: int, ca_file: Path) -> None:
    """A TLS handshake with the broker, verifying it (certificate and the name `localhost`) against `ca_file`."""
    context = ssl.create_default_context(cafile=str(ca_file))
    with (
        socket.create_connection((LOOPBACK, port), timeout=TIMEOUT_S) as sock,
        context.wrap_socket(sock, server_hostname="localhost"),
    ):
        pass


def test_tls_client_not_trusting_the_ca_fails_the_handshake(certs: TlsFiles, tls_port: int, tmp_path: Path) -> None:
    other_ca = init_certs(tmp_path / "other").ca_file
    _handshake(tls_port, certs.ca_file)  # the same handshake succeeds for a client trusting our CA

    with pytest.raises(ssl.SSLCertVerificationError):
        _handshake(tls_port, other_ca)


def test_plain_mqtt_to_the_tls_port_gets_no_answer(account_broker: AccountBroker, tls_port: int) -> None:
    assert mqtt_answers(account_broker.server.port), "the plain listener answers the same probe"
    assert not mqtt_answers(tls_port)


async def test_bridge_source_and_simulated_device_connect_over_mqtts_with_the_url_cafile(
    fleet: Fleet, certs: TlsFiles, tls_port: int
) -> None:
    received: asyncio.Queue[RawMessage] = asyncio.Queue()

    async def handle(message: RawMessage) -> int:
        await received.put(message)
        return 0

    source = MqttSource(
        url=_mqtts_url(fleet.bridge, tls_port, certs.ca_file),
        client_id=f"tls-bridge-{fleet.suffix}",
        subscriptions=[fleet.topic(fleet.a, "telemetry")],
        receive_maximum=10,
        session_expiry_s=0,
        keepalive_s=30,
        retry_max_s=0.5,
        high_water=10,
    )
    stop = asyncio.Event()
    running = asyncio.create_task(source.run(handle, stop))
    device = Device(
        fleet.a.username,
        parse_broker_url(_mqtts_url(None, tls_port, certs.ca_file)),
        DeviceOptions(password=fleet.a.secret, reconnect_min_s=1, reconnect_max_s=1),
    )
    try:
        await asyncio.wait_for(source.connected.wait(), timeout=TIMEOUT_S)
        await asyncio.sleep(0.2)  # let the SUBSCRIBE reach the broker before the device publishes
        device.connect()
        assert await asyncio.to_thread(device.wait_connected, TIMEOUT_S)

        device.send(Sample(seq=0, ts=datetime.now(UTC)))

        message = await asyncio.wait_for(received.get(), timeout=TIMEOUT_S)
        assert message.topic == fleet.topic(fleet.a, "telemetry")
    finally:
        device.close(timeout_s=1.0)
        stop.set()
        await asyncio.wait_for(running, timeout=TIMEOUT_S)
        await source.disconnect()
