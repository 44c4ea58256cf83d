"""Certificate as identity on a real Mosquitto 2.0: a device logs in with its client certificate alone.

This module's broker serves all three listeners of the production config (it overrides the package's
`account_broker`): plain and TLS with passwords, and the certificate listener, where the certificate's
CN (the device id) is the user name and the same ACL patterns confine it. The `fleet` accounts'
passwords keep working on the other two. Certificates are issued per test, for that test's device ids,
by one development CA whose revocation list the broker reads.

A refused TLS handshake has no MQTT answer at all: `Probe.connect` then says None.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from broker import accounts
from broker.accounts import Credential
from broker.agent import AgentConfig, BrokerAgent
from broker.certs import (
    DeviceCertificate,
    TlsFiles,
    device_certificate,
    init_certs,
    openssl_binary,
    revoke_device_certificate,
)
from cli.main import run
from firmware_sim.address import parse_broker_url
from firmware_sim.errors import SimError
from firmware_sim.fleet import Fleet as SimulatedFleet
from firmware_sim.fleet import FleetOptions, device_ids
from stack.process import LOOPBACK, free_port
from tests.integration.broker.conftest import (
    ACCEPTED,
    NOT_AUTHORIZED,
    SILENCE_S,
    SUCCESS,
    TIMEOUT_S,
    AccountBroker,
    Fleet,
    Probe,
    running_account_broker,
    wait_for,
)

pytestmark = pytest.mark.integration


@dataclass(frozen=True)
class Ports:
    """Where this module's broker serves TLS with passwords, and TLS with certificates."""

    tls: int
    certificates: int


@pytest.fixture(scope="module")
def certs_dir(servers_dir: Path) -> Path:
    """The development CA's folder (CA, server certificate, CRL, device certificates)."""
    return servers_dir / f"certs-identity-{uuid.uuid4().hex[:8]}"


@pytest.fixture(scope="module")
def certs(certs_dir: Path) -> TlsFiles:
    """The CA, the server certificate and an empty revocation list."""
    return init_certs(certs_dir)


@pytest.fixture(scope="module")
def ports() -> Ports:
    """Free ports for the two TLS listeners."""
    return Ports(free_port(), free_port())


@pytest.fixture(scope="module")
def account_broker(servers_dir: Path, certs: TlsFiles, ports: Ports) -> Iterator[AccountBroker]:
    """The package's account broker with both TLS listeners, the certificate one checking the CRL."""
    with running_account_broker(
        servers_dir, "identity", tls=certs, tls_port=ports.tls, cert_port=ports.certificates
    ) as broker:
        yield broker


def _cert_probe(
    fleet: Fleet,
    port: int,
    certs: TlsFiles,
    certificate: DeviceCertificate | None,
    *,
    credential: Credential | None = None,
    client_id: str | None = None,
) -> Probe:
    """A TLS probe trusting the CA, presenting `certificate` (if any) and `credential` (if any)."""
    probe = Probe(port, credential, client_id=client_id)
    probe.client.tls_set(
        ca_certs=str(certs.ca_file),
        certfile=str(certificate.cert_file) if certificate else None,
        keyfile=str(certificate.key_file) if certificate else None,
    )
    fleet.probes.append(probe)
    return probe


def _cert_connected(fleet: Fleet, ports: Ports, certs: TlsFiles, certificate: DeviceCertificate) -> Probe:
    probe = _cert_probe(fleet, ports.certificates, certs, certificate)
    assert probe.connect() == SUCCESS, certificate.device_id
    return probe


def _self_signed(folder: Path, common_name: str) -> DeviceCertificate:
    """A certificate with the right CN that no trusted CA signed."""
    folder.mkdir(parents=True, exist_ok=True)
    cert, key = folder / f"{common_name}.pem", folder / f"{common_name}.key"
    subprocess.run(
        [
            str(openssl_binary()), "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
            "-keyout", str(key), "-out", str(cert), "-days", "1", "-subj", f"/CN={common_name}",
        ],
        check=True,
        capture_output=True,
    )  # fmt: skip
    return DeviceCertificate(common_name, cert, key)


def test_device_logs_in_with_its_certificate_alone_and_publishes_on_its_own_topics(
    fleet: Fleet, certs_dir: Path, certs: TlsFiles, ports: Ports
) -> None:
    bridge = fleet.connected(fleet.bridge)  # a password login on the plain listener, beside it
    bridge.subscribe("fleet/v1/+/telemetry", "fleet/v1/+/status")
    api = fleet.connected(fleet.api)

    device = _cert_connected(fleet, ports, certs, device_certificate(certs_dir, fleet.a.username))
    device.subscribe(fleet.topic(fleet.a, "cmd"))

    assert device.publish(fleet.topic(fleet.a, "telemetry"), b"by certificate") == SUCCESS
    assert device.publish(fleet.topic(fleet.a, "status"), b"online") == SUCCESS
    assert sorted([bridge.next_message(), bridge.next_message()]) == [
        (fleet.topic(fleet.a, "status"), b"online"),
        (fleet.topic(fleet.a, "telemetry"), b"by certificate"),
    ]
    assert api.publish(fleet.topic(fleet.a, "cmd"), b"ping") == SUCCESS
    assert device.next_message() == (fleet.topic(fleet.a, "cmd"), b"ping")


def test_certificate_of_one_device_cannot_publish_as_another_even_with_the_others_password(
    fleet: Fleet, certs_dir: Path, certs: TlsFiles, ports: Ports
) -> None:
    bridge = fleet.connected(fleet.bridge)
    bridge.subscribe("fleet/v1/+/telemetry")
    # The MQTT user name and password are ignored on this listener: the certificate's CN decides.
    impostor = _cert_probe(
        fleet, ports.certificates, certs, device_certificate(certs_dir, fleet.a.username), credential=fleet.b
    )
    assert impostor.connect() == SUCCESS

    forged = impostor.publish(fleet.topic(fleet.b, "telemetry"), b"forged")
    own = impostor.publish(fleet.topic(fleet.a, "telemetry"), b"own")

    assert (forged, own) == (NOT_AUTHORIZED, SUCCESS)
    assert bridge.next_message() == (fleet.topic(fleet.a, "telemetry"), b"own")
    assert bridge.received() == []


def test_certificate_from_another_ca_is_refused_in_the_handshake(
    fleet: Fleet, certs_dir: Path, certs: TlsFiles, ports: Ports, tmp_path: Path
) -> None:
    other_ca = init_certs(tmp_path / "other-ca")
    foreign = device_certificate(tmp_path / "other-ca", fleet.a.username)  # right CN, another CA
    self_signed = _self_signed(tmp_path / "self-signed", fleet.a.username)

    answers = [_cert_probe(fleet, ports.certificates, certs, c).connect() for c in (foreign, self_signed)]

    assert answers == [None, None]
    assert other_ca.ca_file != certs.ca_file
    assert _cert_probe(fleet, ports.certificates, certs, device_certificate(certs_dir, fleet.a.username)).connect() == (
        SUCCESS
    ), "the CA's own certificate for the same CN is accepted"


def test_no_certificate_is_refused_on_the_certificate_listener_even_with_a_password(
    fleet: Fleet, certs: TlsFiles, ports: Ports
) -> None:
    assert _cert_probe(fleet, ports.certificates, certs, None, credential=fleet.a).connect() is None
    assert _cert_probe(fleet, ports.tls, certs, None, credential=fleet.a).connect() == SUCCESS, "8883 takes it"


def test_certificate_alone_does_not_log_in_on_the_password_tls_listener(
    fleet: Fleet, certs_dir: Path, certs: TlsFiles, ports: Ports
) -> None:
    certificate = device_certificate(certs_dir, fleet.a.username)

    assert _cert_probe(fleet, ports.tls, certs, certificate).connect() == NOT_AUTHORIZED


def test_brokers_own_server_certificate_is_no_client_login(fleet: Fleet, certs: TlsFiles, ports: Ports) -> None:
    # Signed by the same CA, but for serverAuth only: OpenSSL's client-purpose check refuses it.
    server = DeviceCertificate("localhost", certs.cert_file, certs.key_file)

    assert _cert_probe(fleet, ports.certificates, certs, server).connect() is None


def test_certificate_login_cannot_end_another_devices_connection_by_its_client_id(
    fleet: Fleet, certs_dir: Path, certs: TlsFiles, ports: Ports
) -> None:
    victim = fleet.connected(fleet.b, client_id=fleet.b.username)

    intruder = _cert_probe(
        fleet, ports.certificates, certs, device_certificate(certs_dir, fleet.a.username), client_id=fleet.b.username
    )
    assert intruder.connect() == SUCCESS

    assert not victim.lost.wait(SILENCE_S)


def test_revoked_device_certificate_is_refused_after_the_reload(
    fleet: Fleet, certs_dir: Path, certs: TlsFiles, ports: Ports
) -> None:
    certificate = device_certificate(certs_dir, fleet.a.username)
    kept = DeviceCertificate(certificate.device_id, certs_dir / "kept.pem", certs_dir / "kept.key")
    kept.cert_file.write_bytes(certificate.cert_file.read_bytes())  # what the device still holds
    kept.key_file.write_bytes(certificate.key_file.read_bytes())
    bystander = _cert_connected(fleet, ports, certs, device_certificate(certs_dir, fleet.b.username))

    assert accounts.revoke(fleet.conn, fleet.a.username)
    assert revoke_device_certificate(certs_dir, fleet.a.username)
    # Until the broker reloads, the old list holds (and the old password file): still accepted.
    open_before = _cert_probe(fleet, ports.certificates, certs, kept)
    assert open_before.connect() == SUCCESS
    fleet.broker.apply(fleet.conn)

    assert _cert_probe(fleet, ports.certificates, certs, kept).connect() is None
    # Mosquitto 2.0.11 does not end a certificate login at the reload; the account's ACL block
    # (deny #) leaves that connection nothing to do.
    assert not open_before.lost.is_set()
    assert open_before.publish(fleet.topic(fleet.a, "telemetry"), b"after revocation") == NOT_AUTHORIZED
    assert bystander.publish(fleet.topic(fleet.b, "telemetry"), b"still here") in ACCEPTED
    assert _cert_probe(fleet, ports.certificates, certs, kept).connect() is None, "stays refused"


def test_stolen_certificate_is_refused_while_the_devices_password_keeps_working(
    fleet: Fleet, certs_dir: Path, certs: TlsFiles, ports: Ports
) -> None:
    certificate = device_certificate(certs_dir, fleet.a.username)
    stolen = DeviceCertificate(certificate.device_id, certs_dir / "stolen.pem", certs_dir / "stolen.key")
    stolen.cert_file.write_bytes(certificate.cert_file.read_bytes())
    stolen.key_file.write_bytes(certificate.key_file.read_bytes())

    thief = _cert_connected(fleet, ports, certs, stolen)  # connected before the revocation

    assert revoke_device_certificate(certs_dir, fleet.a.username)
    fleet.broker.apply(fleet.conn)

    assert _cert_probe(fleet, ports.certificates, certs, stolen).connect() is None
    # Not protected: Mosquitto 2.0.11 leaves the open connection alone, and the account is not revoked.
    assert not thief.lost.is_set()
    assert thief.publish(fleet.topic(fleet.a, "telemetry"), b"still open") in ACCEPTED
    replacement = device_certificate(certs_dir, fleet.a.username)
    assert replacement.cert_file.read_bytes() != stolen.cert_file.read_bytes(), "a new certificate, a new serial"
    assert _cert_probe(fleet, ports.certificates, certs, replacement).connect() == SUCCESS
    # The device's own login takes its client id back (client id = user name): the thief is cut off.
    assert thief.lost.wait(TIMEOUT_S)
    assert fleet.probe(fleet.a).connect() == SUCCESS, "the account itself was not revoked"


def test_disabled_device_with_a_certificate_connects_but_may_do_nothing_until_enabled(
    fleet: Fleet, certs_dir: Path, certs: TlsFiles, ports: Ports
) -> None:
    certificate = device_certificate(certs_dir, fleet.a.username)
    bridge = fleet.connected(fleet.bridge)
    bridge.subscribe("fleet/v1/+/telemetry")

    accounts.set_device_disabled(fleet.conn, fleet.a.username, True)
    fleet.broker.apply(fleet.conn)
    # The certificate is still valid, and this listener reads no password file: the login succeeds.
    disabled = _cert_connected(fleet, ports, certs, certificate)
    assert disabled.publish(fleet.topic(fleet.a, "telemetry"), b"while disabled") == NOT_AUTHORIZED
    assert bridge.received() == []

    accounts.set_device_disabled(fleet.conn, fleet.a.username, False)
    fleet.broker.apply(fleet.conn)
    assert disabled.publish(fleet.topic(fleet.a, "telemetry"), b"enabled again") == SUCCESS
    assert bridge.next_message() == (fleet.topic(fleet.a, "telemetry"), b"enabled again")


def test_unprovisioned_certificate_gets_device_rights_on_its_own_topics_only(
    fleet: Fleet, certs_dir: Path, certs: TlsFiles, ports: Ports
) -> None:
    # The CA is the authority on this listener: a certificate for an id with no account at all logs
    # in, and the ACL patterns confine it like any device. Recorded so the docs say it plainly.
    ghost = device_certificate(certs_dir, f"ghost-{fleet.suffix}")
    bridge = fleet.connected(fleet.bridge)
    bridge.subscribe("fleet/v1/+/telemetry")
    probe = _cert_connected(fleet, ports, certs, ghost)

    assert probe.publish(fleet.topic(fleet.a, "telemetry"), b"forged") == NOT_AUTHORIZED
    assert probe.publish(f"fleet/v1/{ghost.device_id}/telemetry", b"x") == SUCCESS
    assert bridge.next_message() == (f"fleet/v1/{ghost.device_id}/telemetry", b"x")
    assert bridge.received() == []


# --- the commands ----------------------------------------------------------------------------------


def _fleet_command(broker: AccountBroker, *argv: str) -> int:
    """Run `fleet ARGV` against this module's broker; wait until the broker logged the reload it asked for."""
    before = broker.reloads()
    code = run([*argv, "--broker-pid", str(broker.pid)], {})
    if code == 0:
        wait_for(lambda: broker.reloads() > before, "the broker to log its reload")
    return code


def test_fleet_devices_revoke_also_revokes_the_devices_certificate(
    fleet: Fleet, database_url: str, certs_dir: Path, certs: TlsFiles, ports: Ports
) -> None:
    certificate = device_certificate(certs_dir, fleet.a.username)
    held = DeviceCertificate(certificate.device_id, certs_dir / "held.pem", certs_dir / "held.key")
    held.cert_file.write_bytes(certificate.cert_file.read_bytes())
    held.key_file.write_bytes(certificate.key_file.read_bytes())

    # The broker's agent applies the account change, and reloads the broker again for the rewritten CRL.
    agent = BrokerAgent(AgentConfig(database_url, fleet.broker.accounts_dir, broker_pid=fleet.broker.pid)).start()
    try:
        wait_for(lambda: agent.applied_revision is not None, "the agent's first resync")
        code = run(
            ["devices", "revoke", fleet.a.username, "--database-url", database_url, "--certs-dir", str(certs_dir)], {}
        )
    finally:
        agent.stop()

    assert code == 0
    assert _cert_probe(fleet, ports.certificates, certs, held).connect() is None
    assert fleet.probe(fleet.a).connect() == NOT_AUTHORIZED, "and the password is gone"
    assert _cert_probe(fleet, ports.certificates, certs, device_certificate(certs_dir, fleet.b.username)).connect() == (
        SUCCESS
    )


def test_fleet_certs_device_refuses_to_name_a_certificate_like_a_service_account(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], database_url: str, certs_dir: Path
) -> None:
    for service in (fleet.bridge, fleet.api, fleet.integrator):
        code = run(["certs", "device", service.username, "--dir", str(certs_dir), "--database-url", database_url], {})

        assert code == 1
        assert "would log in as it" in capsys.readouterr().err
        assert not (certs_dir / "devices" / f"{service.username}.pem").exists()
    assert run(["certs", "device", fleet.a.username, "--dir", str(certs_dir), "--database-url", database_url], {}) == 0


def test_fleet_certs_device_and_revoke(
    fleet: Fleet, capsys: pytest.CaptureFixture[str], certs_dir: Path, certs: TlsFiles, ports: Ports
) -> None:
    assert run(["certs", "device", fleet.b.username, "--dir", str(certs_dir)], {}) == 0
    made = DeviceCertificate(
        fleet.b.username,
        certs_dir / "devices" / f"{fleet.b.username}.pem",
        certs_dir / "devices" / f"{fleet.b.username}.key",
    )
    assert str(made.cert_file) in capsys.readouterr().err
    held = DeviceCertificate(made.device_id, certs_dir / "held-b.pem", certs_dir / "held-b.key")
    held.cert_file.write_bytes(made.cert_file.read_bytes())
    held.key_file.write_bytes(made.key_file.read_bytes())
    assert _cert_probe(fleet, ports.certificates, certs, held).connect() == SUCCESS

    code = _fleet_command(
        fleet.broker, "certs", "revoke", fleet.b.username, "--dir", str(certs_dir),
        "--accounts-dir", str(fleet.broker.accounts_dir),
    )  # fmt: skip

    assert code == 0
    assert _cert_probe(fleet, ports.certificates, certs, held).connect() is None
    assert fleet.probe(fleet.b).connect() == SUCCESS, "its account and password are untouched"
    assert run(["certs", "revoke", fleet.b.username, "--dir", str(certs_dir)], {}) == 1, "nothing left to revoke"


# --- the simulator ---------------------------------------------------------------------------------


def test_simulated_fleet_logs_in_with_per_device_certificates(
    fleet: Fleet, certs_dir: Path, certs: TlsFiles, ports: Ports
) -> None:
    bridge = fleet.connected(fleet.bridge)
    bridge.subscribe("fleet/v1/+/telemetry")
    prefix = f"sim-{fleet.suffix}-"
    ids = device_ids(prefix, 2)
    for device_id in ids:
        device_certificate(certs_dir, device_id)
    # No password anywhere: the URL has none, and the devices have no accounts' secrets.
    address = parse_broker_url(f"mqtts://{LOOPBACK}:{ports.certificates}?cafile={certs.ca_file}")
    options = FleetOptions(devices=2, rate_hz=None, count=3, prefix=prefix, cert_dir=certs_dir / "devices")

    with SimulatedFleet(address, options) as simulated:
        simulated.start()
        assert simulated.wait_connected(TIMEOUT_S)
        simulated.run()
        assert simulated.wait_acked(TIMEOUT_S)

    topics = [topic for topic, _ in bridge.received(1.0)]
    assert sorted(set(topics)) == sorted(f"fleet/v1/{device_id}/telemetry" for device_id in ids)


def test_simulated_device_without_its_certificate_is_named_before_anything_connects(
    certs: TlsFiles, ports: Ports, tmp_path: Path
) -> None:
    address = parse_broker_url(f"mqtts://{LOOPBACK}:{ports.certificates}?cafile={certs.ca_file}")

    with pytest.raises(SimError, match="fleet certs device nobody-0001"):
        SimulatedFleet(address, FleetOptions(devices=1, prefix="nobody-", cert_dir=tmp_path))
