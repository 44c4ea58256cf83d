"""A Mosquitto that enforces accounts (its own, per module: the session broker stays anonymous for other
tests), the accounts of one small fleet per test, and an MQTT 5 probe that records every broker answer.

Each test provisions its accounts in its own fresh database and rewrites the module broker's files from
it (`broker.reload.apply`), so it starts from its accounts only; ids carry a per-test suffix because
retained messages outlive a test in the shared broker.
"""

from __future__ import annotations

import contextlib
import queue
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import psycopg
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties
from paho.mqtt.reasoncodes import ReasonCode

from broker import accounts, reload
from broker.accounts import AccountFiles, Credential, DeviceSpec
from broker.acl import Role, render_acl
from broker.certs import TlsFiles
from broker.process import start_mosquitto
from stack.process import LOOPBACK, ServerProcess

TIMEOUT_S = 5.0
# How long to wait for something that must NOT arrive: long against loopback delivery (well under 10 ms).
SILENCE_S = 0.5
RELOAD_LINE = "Reloading config."

SUCCESS = 0x00
GRANTED_QOS_1 = 0x01
NO_MATCHING_SUBSCRIBERS = 0x10
NOT_AUTHORIZED = 0x87
# A PUBACK that accepted the message, whether or not anyone subscribed.
ACCEPTED = frozenset({SUCCESS, NO_MATCHING_SUBSCRIBERS})


@dataclass
class AccountBroker:
    """The module's Mosquitto and the folder its password and ACL files are written to."""

    server: ServerProcess
    accounts_dir: Path

    @property
    def pid(self) -> int:
        """The broker's process id (it never changes: the broker is reloaded, never restarted)."""
        assert self.server.pid is not None
        return self.server.pid

    def reloads(self) -> int:
        """How many times the broker has logged a reload since it started."""
        return self.server.log_path.read_text().count(RELOAD_LINE)

    def apply(self, conn: psycopg.Connection[tuple[Any, ...]]) -> None:
        """Rewrite the files from `conn`'s database, SIGHUP the broker and wait until it logged the reload."""
        before = self.reloads()
        report = reload.apply(conn, self.accounts_dir, broker_pid=self.pid)
        assert report.pids == (self.pid,)
        wait_for(lambda: self.reloads() > before, "the broker to log its reload")


@contextlib.contextmanager
def running_account_broker(
    servers_dir: Path,
    label: str,
    *,
    tls: TlsFiles | None = None,
    tls_port: int | None = None,
    cert_port: int | None = None,
) -> Iterator[AccountBroker]:
    """A Mosquitto with allow_anonymous false and the ACL file, started with no accounts at all; with
    `tls`, also the TLS listener on `tls_port` and, with `cert_port`, the certificate listener."""
    name = uuid.uuid4().hex[:8]
    accounts_dir = servers_dir / f"accounts-{name}"
    paths = reload.write_files(accounts_dir, AccountFiles("", render_acl([])))
    with start_mosquitto(
        servers_dir / f"mosquitto-{label}-{name}",
        anonymous=False,
        password_file=paths.passwords,
        acl_file=paths.acl,
        tls=tls,
        tls_port=tls_port,
        cert_port=cert_port,
    ) as server:
        yield AccountBroker(server, accounts_dir)


@pytest.fixture(scope="module")
def account_broker(servers_dir: Path) -> Iterator[AccountBroker]:
    """The module's broker with accounts: the plain listener only."""
    with running_account_broker(servers_dir, "acl") as broker:
        yield broker


class Probe:
    """One paho MQTT 5 client making one attempt after another, recording each answer of the broker.

    It never reconnects by itself: a connection the broker ends stays ended, and `lost` tells.
    """

    def __init__(self, port: int, credential: Credential | None = None, *, client_id: str | None = None) -> None:
        self.port = port
        self.username = credential.username if credential else None
        self.client_id = client_id or f"probe-{uuid.uuid4().hex[:12]}"
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2,
            client_id=self.client_id,
            protocol=mqtt.MQTTv5,
            reconnect_on_failure=False,
        )
        if credential is not None:
            self.client.username_pw_set(credential.username, credential.secret)
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self._answers: dict[str, queue.Queue[Any]] = {name: queue.Queue() for name in ("connack", "suback", "puback")}
        self.lost = threading.Event()
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_subscribe = lambda _c, _u, _mid, codes, _p: self._answers["suback"].put([c.value for c in codes])
        self.client.on_publish = lambda _c, _u, _mid, code, _p: self._answers["puback"].put(code.value)
        self.client.on_message = lambda _c, _u, message: self.messages.put(message)
        self._connected = False

    def _on_connect(self, _c: mqtt.Client, _u: Any, _flags: Any, code: ReasonCode, _p: Any) -> None:
        self._connected = not code.is_failure
        self._answers["connack"].put(code.value)

    def _on_disconnect(self, client: mqtt.Client, _u: Any, _flags: Any, _code: ReasonCode, _p: Any) -> None:
        if self._connected:
            self.lost.set()
        else:
            self._answers["connack"].put(None)  # closed before any CONNACK: e.g. a refused TLS handshake
        self._connected = False
        client.disconnect()  # ends paho's network loop: no reconnect behind the test's back

    def connect(self, *, session_expiry_s: int = 0) -> int | None:
        """Connect (clean start); the CONNACK reason code, or None when the broker closed the connection
        without one (a TLS handshake it refused: with TLS 1.3 the client learns of that only afterwards).

        With `session_expiry_s` the broker keeps the session that long after the connection ends, as it
        does for a device (firmware_sim connects so): an offline session under the client id.
        """
        properties = Properties(PacketTypes.CONNECT)  # type: ignore[no-untyped-call]
        properties.SessionExpiryInterval = session_expiry_s
        try:
            self.client.connect(LOOPBACK, self.port, keepalive=30, clean_start=True, properties=properties)
        except OSError:  # ssl.SSLError included: the handshake failed inside connect()
            return None
        self.client.loop_start()
        code: int | None = self._answers["connack"].get(timeout=TIMEOUT_S)
        return code

    def subscribe(self, *topics: str) -> list[int]:
        """Subscribe at QoS 1; the SUBACK reason code of each filter."""
        self.client.subscribe([(topic, 1) for topic in topics])
        codes: list[int] = self._answers["suback"].get(timeout=TIMEOUT_S)
        return codes

    def publish(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """Publish at QoS 1; the PUBACK reason code."""
        self.client.publish(topic, payload, qos=1, retain=retain)
        code: int = self._answers["puback"].get(timeout=TIMEOUT_S)
        return code

    def received(self, timeout_s: float = SILENCE_S) -> list[tuple[str, bytes]]:
        """(topic, payload) of every message that arrives within `timeout_s`."""
        deadline = time.monotonic() + timeout_s
        got: list[tuple[str, bytes]] = []
        while (left := deadline - time.monotonic()) > 0:
            try:
                message = self.messages.get(timeout=left)
            except queue.Empty:
                break
            got.append((message.topic, bytes(message.payload)))
        return got

    def next_message(self) -> tuple[str, bytes]:
        """The next message; fails the test after TIMEOUT_S."""
        message = self.messages.get(timeout=TIMEOUT_S)
        return message.topic, bytes(message.payload)

    def close(self) -> None:
        """Disconnect and stop the network thread."""
        self.client.disconnect()
        self.client.loop_stop()


@dataclass
class Fleet:
    """The accounts of one test: two devices in different groups, two bridges, an API and two integrators."""

    broker: AccountBroker
    conn: psycopg.Connection[tuple[Any, ...]]
    suffix: str
    a: Credential
    b: Credential
    bridge: Credential
    bridge_2: Credential
    api: Credential
    engine: Credential
    integrator: Credential
    north_integrator: Credential
    probes: list[Probe] = field(default_factory=list)

    def probe(self, credential: Credential | None, *, client_id: str | None = None) -> Probe:
        """A probe for `credential`, closed at the end of the test."""
        probe = Probe(self.broker.server.port, credential, client_id=client_id)
        self.probes.append(probe)
        return probe

    def connected(self, credential: Credential, *, client_id: str | None = None) -> Probe:
        """A probe for `credential` that the broker accepted."""
        probe = self.probe(credential, client_id=client_id)
        assert probe.connect() == SUCCESS, credential.username
        return probe

    def topic(self, credential: Credential, kind: str) -> str:
        """fleet/v1/{username}/{kind}."""
        return f"fleet/v1/{credential.username}/{kind}"


@pytest.fixture
def fleet(account_broker: AccountBroker, database_url: str) -> Iterator[Fleet]:
    """Devices a (group north) and b (group south), services and integrators, loaded into the broker."""
    suffix = uuid.uuid4().hex[:8]
    with psycopg.connect(database_url, autocommit=True) as conn:
        a, b = accounts.import_devices(
            conn,
            [DeviceSpec(f"a-{suffix}", group=f"north-{suffix}"), DeviceSpec(f"b-{suffix}", group=f"south-{suffix}")],
        )
        fleet = Fleet(
            account_broker,
            conn,
            suffix,
            a=a,
            b=b,
            bridge=accounts.add_service_account(conn, Role.BRIDGE, "fleetbridge-bridge"),
            # A second instance: one account per instance, as client ids are bound to user names.
            bridge_2=accounts.add_service_account(conn, Role.BRIDGE, "fleetbridge-bridge-2"),
            api=accounts.add_service_account(conn, Role.API, "fleetbridge-api"),
            engine=accounts.add_service_account(conn, Role.ENGINE, "fleetbridge-engine-1"),
            integrator=accounts.add_integrator(conn, "acme"),
            north_integrator=accounts.add_integrator(conn, "north-view", group=f"north-{suffix}"),
        )
        account_broker.apply(conn)
        try:
            yield fleet
        finally:
            for probe in fleet.probes:
                probe.close()


def wait_for(predicate: Callable[[], bool], what: str) -> None:
    """Poll `predicate` until true; fail the test after TIMEOUT_S."""
    deadline = time.monotonic() + TIMEOUT_S
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {TIMEOUT_S} s waiting for {what}")
        time.sleep(0.01)
