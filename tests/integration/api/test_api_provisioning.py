"""Provisioning through the API reaches a running Mosquitto without a restart, through its broker agent.

A Mosquitto of this module runs with `allow_anonymous false` and the rendered password and ACL files;
a broker agent (broker/agent.py) owns the files and reloads it. The API only writes the database and
answers once the agent acknowledged the change. Every step is a real MQTT 5 CONNECT with the secret the
API returned, after the broker logged its reload; the broker's pid never changes.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import psycopg
import pytest

from api.server import running
from broker import reload
from broker.accounts import AccountFiles, Credential
from broker.acl import render_acl
from broker.agent import AgentConfig, BrokerAgent
from broker.process import start_mosquitto
from config import Settings, load_settings
from tests.integration.api.conftest import TEST_JWT_SECRET, mint_token
from tests.integration.broker.conftest import (
    ACCEPTED,
    NOT_AUTHORIZED,
    SUCCESS,
    TIMEOUT_S,
    AccountBroker,
    Probe,
    wait_for,
)

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def account_broker(servers_dir: Path) -> Iterator[AccountBroker]:
    """A Mosquitto that admits only the accounts in its files, which start empty."""
    name = uuid.uuid4().hex[:8]
    accounts_dir = servers_dir / f"api-accounts-{name}"
    paths = reload.write_files(accounts_dir, AccountFiles("", render_acl([])))
    with start_mosquitto(
        servers_dir / f"mosquitto-api-{name}", anonymous=False, password_file=paths.passwords, acl_file=paths.acl
    ) as server:
        yield AccountBroker(server, accounts_dir)


AGENT = "api-test-agent"


@pytest.fixture
def agent(database_url: str, account_broker: AccountBroker) -> Iterator[BrokerAgent]:
    """The broker's agent, following this test's database."""
    running = BrokerAgent(
        AgentConfig(database_url, account_broker.accounts_dir, broker_pid=account_broker.pid, name=AGENT)
    ).start()
    wait_for(lambda: running.applied_revision is not None, "the agent's first resync")
    yield running
    running.stop()


@pytest.fixture
def broker_settings(redis_url: str, database_url: str, agent: BrokerAgent) -> Settings:
    return load_settings(
        {
            "FLEETBRIDGE_REDIS_URL": redis_url,
            "FLEETBRIDGE_DATABASE_URL": database_url,
            "FLEETBRIDGE_API_JWT_SECRET": TEST_JWT_SECRET,
        }
    )


@pytest.fixture
async def admin(broker_settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    headers = {"Authorization": f"Bearer {mint_token(broker_settings, 'ada', 'admin')}"}
    async with running(broker_settings) as url, httpx.AsyncClient(base_url=url, timeout=10, headers=headers) as client:
        yield client


class Devices:
    """Probes of one test, closed at its end."""

    def __init__(self, broker: AccountBroker) -> None:
        self.broker = broker
        self.probes: list[Probe] = []

    def connect(self, device_id: str, secret: str) -> tuple[int, Probe]:
        probe = Probe(self.broker.server.port, Credential(device_id, secret))
        self.probes.append(probe)
        return probe.connect(), probe


@pytest.fixture
def devices(account_broker: AccountBroker) -> Iterator[Devices]:
    tracker = Devices(account_broker)
    try:
        yield tracker
    finally:
        for probe in tracker.probes:
            probe.close()


async def change(account_broker: AccountBroker, request: httpx.Request, client: httpx.AsyncClient) -> httpx.Response:
    """Send `request` and wait until the broker logged the reload it caused."""
    before = account_broker.reloads()
    response = await client.send(request)
    assert response.status_code in {200, 201}, response.text
    assert response.json()["broker"]["status"] == "applied", response.json()["broker"]
    assert response.json()["broker"]["agents"] == [AGENT]
    wait_for(lambda: account_broker.reloads() > before, "the broker to log its reload")
    return response


def suffix() -> str:
    return uuid.uuid4().hex[:8]


async def test_device_provisioned_by_post_connects_without_a_broker_restart(
    admin: httpx.AsyncClient, account_broker: AccountBroker, devices: Devices
) -> None:
    device_id = f"truck-{suffix()}"
    pid = account_broker.pid
    assert devices.connect(device_id, "not-yet-provisioned")[0] == NOT_AUTHORIZED

    created = await change(
        account_broker, admin.build_request("POST", "/api/v1/devices", json={"id": device_id}), admin
    )
    secret = created.json()["secret"]

    assert devices.connect(device_id, secret)[0] == SUCCESS
    assert devices.connect(device_id, secret + "x")[0] == NOT_AUTHORIZED
    assert (account_broker.pid, account_broker.server.alive) == (pid, True)


async def test_disabled_device_is_cut_off_and_refused_until_enabled(
    admin: httpx.AsyncClient, account_broker: AccountBroker, devices: Devices
) -> None:
    device_id = f"truck-{suffix()}"
    created = await change(
        account_broker, admin.build_request("POST", "/api/v1/devices", json={"id": device_id}), admin
    )
    secret = created.json()["secret"]
    code, connected = devices.connect(device_id, secret)
    assert code == SUCCESS

    path = f"/api/v1/devices/{device_id}"
    await change(account_broker, admin.build_request("PATCH", path, json={"disabled": True}), admin)

    assert connected.lost.wait(TIMEOUT_S), "the disabled device's connection ends at the reload"
    assert devices.connect(device_id, secret)[0] == NOT_AUTHORIZED

    await change(account_broker, admin.build_request("PATCH", path, json={"disabled": False}), admin)

    assert devices.connect(device_id, secret)[0] == SUCCESS


async def test_deleted_device_is_cut_off_and_refused(
    admin: httpx.AsyncClient, account_broker: AccountBroker, devices: Devices
) -> None:
    device_id, other_id = f"truck-{suffix()}", f"truck-{suffix()}"
    created = await change(
        account_broker, admin.build_request("POST", "/api/v1/devices", json={"id": device_id}), admin
    )
    other = await change(account_broker, admin.build_request("POST", "/api/v1/devices", json={"id": other_id}), admin)
    code, connected = devices.connect(device_id, created.json()["secret"])
    other_code, other_probe = devices.connect(other_id, other.json()["secret"])
    assert (code, other_code) == (SUCCESS, SUCCESS)

    await change(account_broker, admin.build_request("DELETE", f"/api/v1/devices/{device_id}"), admin)

    assert connected.lost.wait(TIMEOUT_S), "the deleted device's connection ends at the reload"
    assert devices.connect(device_id, created.json()["secret"])[0] == NOT_AUTHORIZED
    assert not other_probe.lost.is_set(), "other devices stay connected"


async def test_new_secret_replaces_the_old_one_on_the_broker(
    admin: httpx.AsyncClient, account_broker: AccountBroker, devices: Devices
) -> None:
    device_id = f"truck-{suffix()}"
    created = await change(
        account_broker, admin.build_request("POST", "/api/v1/devices", json={"id": device_id}), admin
    )
    old_secret = created.json()["secret"]
    code, connected = devices.connect(device_id, old_secret)
    assert code == SUCCESS

    rotated = await change(account_broker, admin.build_request("POST", f"/api/v1/devices/{device_id}/secret"), admin)

    assert connected.lost.wait(TIMEOUT_S), "the connection made with the old secret ends at the reload"
    assert devices.connect(device_id, old_secret)[0] == NOT_AUTHORIZED
    assert devices.connect(device_id, rotated.json()["secret"])[0] == SUCCESS


async def test_a_change_no_agent_applied_is_reported_and_the_change_kept(
    redis_url: str, database_url: str, account_broker: AccountBroker
) -> None:
    # An agent that cannot signal its broker (the pid is not a Mosquitto) never acknowledges.
    stuck = BrokerAgent(
        AgentConfig(database_url, account_broker.accounts_dir, broker_pid=os.getpid(), name="stuck-agent")
    ).start()
    settings = load_settings(
        {
            "FLEETBRIDGE_REDIS_URL": redis_url,
            "FLEETBRIDGE_DATABASE_URL": database_url,
            "FLEETBRIDGE_API_JWT_SECRET": TEST_JWT_SECRET,
        }
    )
    headers = {"Authorization": f"Bearer {mint_token(settings, 'ada', 'admin')}"}
    try:
        async with running(settings) as url, httpx.AsyncClient(base_url=url, timeout=10, headers=headers) as client:
            wait_for(lambda: _agent_known(database_url), "the agent to record itself")
            created = await client.post("/api/v1/devices", json={"id": "truck-kept"})
            details = await client.get("/api/v1/devices/truck-kept")
    finally:
        stuck.stop()

    assert created.status_code == 201
    broker = created.json()["broker"]
    assert (broker["status"], broker["agents"], broker["waiting"]) == ("pending", [], ["stuck-agent"])
    assert "NOT yet applied by stuck-agent" in broker["detail"]
    assert details.status_code == 200


def _agent_known(database_url: str) -> bool:
    with psycopg.connect(database_url) as conn:
        return conn.execute("SELECT 1 FROM mqtt_broker_agents WHERE name = 'stuck-agent'").fetchone() is not None


# --- gateways (docs/gateways.md) ------------------------------------------------------------------


async def _post(admin: httpx.AsyncClient, account_broker: AccountBroker, body: dict[str, object]) -> httpx.Response:
    return await change(account_broker, admin.build_request("POST", "/api/v1/devices", json=body), admin)


async def test_a_child_registered_under_a_gateway_is_published_for_by_it_alone(
    admin: httpx.AsyncClient, account_broker: AccountBroker, devices: Devices
) -> None:
    tag = suffix()
    gateway = await _post(admin, account_broker, {"id": f"gw-{tag}", "kind": "gateway", "site": f"north-{tag}"})
    child = await _post(admin, account_broker, {"id": f"flow-{tag}", "kind": "flow", "gateway": f"gw-{tag}"})
    other = await _post(admin, account_broker, {"id": f"level-{tag}", "kind": "level"})
    assert gateway.json()["device"]["site"] == f"north-{tag}"
    assert child.json()["device"]["gateway"] == f"gw-{tag}"

    code, gw = devices.connect(f"gw-{tag}", gateway.json()["secret"])
    assert code == SUCCESS
    assert gw.publish(f"fleet/v1/flow-{tag}/telemetry", b"{}") in ACCEPTED
    assert gw.publish(f"fleet/v1/level-{tag}/telemetry", b"{}") == NOT_AUTHORIZED

    # Moving the other sensor under the gateway gives it the right; detaching the child takes it away.
    await change(
        account_broker,
        admin.build_request("PATCH", f"/api/v1/devices/level-{tag}", json={"gateway": f"gw-{tag}"}),
        admin,
    )
    moved = await change(
        account_broker, admin.build_request("PATCH", f"/api/v1/devices/flow-{tag}", json={"gateway": None}), admin
    )
    assert moved.json()["device"]["gateway"] is None
    assert other.status_code == 201
    code, gw = devices.connect(f"gw-{tag}", gateway.json()["secret"])
    assert code == SUCCESS
    assert gw.publish(f"fleet/v1/level-{tag}/telemetry", b"{}") in ACCEPTED
    assert gw.publish(f"fleet/v1/flow-{tag}/telemetry", b"{}") == NOT_AUTHORIZED


@pytest.mark.parametrize(
    ("gateway", "reason"),
    [("missing", "is not a registered device"), ("truck", "not 'gateway'"), ("self", "its own gateway")],
)
async def test_a_gateway_that_is_not_one_is_refused_with_the_reason(
    admin: httpx.AsyncClient, account_broker: AccountBroker, gateway: str, reason: str
) -> None:
    tag = suffix()
    await _post(admin, account_broker, {"id": f"truck-{tag}"})
    names = {"missing": f"nobody-{tag}", "truck": f"truck-{tag}", "self": f"s-{tag}"}

    created = await admin.post("/api/v1/devices", json={"id": f"s-{tag}", "gateway": names[gateway]})
    patched = await admin.patch(
        f"/api/v1/devices/truck-{tag}", json={"gateway": names[gateway].replace(f"s-{tag}", f"truck-{tag}")}
    )

    assert created.status_code == 400, created.text
    assert reason in created.json()["detail"]
    assert patched.status_code == 400, patched.text
    assert (await admin.get(f"/api/v1/devices/s-{tag}")).status_code == 404


async def test_a_gateway_with_children_keeps_its_kind(admin: httpx.AsyncClient, account_broker: AccountBroker) -> None:
    tag = suffix()
    await _post(admin, account_broker, {"id": f"gw-{tag}", "kind": "gateway"})
    await _post(admin, account_broker, {"id": f"t-{tag}", "kind": "temperature", "gateway": f"gw-{tag}"})

    refused = await admin.patch(f"/api/v1/devices/gw-{tag}", json={"kind": "truck"})

    assert refused.status_code == 400, refused.text
    assert "publishes for 1 devices" in refused.json()["detail"]
