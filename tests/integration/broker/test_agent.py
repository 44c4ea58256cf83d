"""The broker agent: account changes written only to the database reach a running Mosquitto within a second.

Each test runs an agent against its own database and the module's broker (allow_anonymous false, files
owned by the agent), makes changes the way the API and the CLI do (`broker.accounts`, then
`broker.delivery.wait_applied`), and checks them with real MQTT 5 CONNECTs, polled against a deadline.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import psycopg
import pytest

from broker import accounts, delivery
from broker.accounts import Credential, DeviceSpec
from broker.acl import Role
from broker.agent import AgentConfig, BrokerAgent
from tests.integration.broker.conftest import NOT_AUTHORIZED, SUCCESS, TIMEOUT_S, AccountBroker, Probe, wait_for

pytestmark = pytest.mark.integration

Connection = psycopg.Connection[tuple[Any, ...]]
# What "at once" means for a device provisioned anywhere: it connects within this long.
EFFECT_DEADLINE_S = 2.0
AGENT_APP = "fleetbridge-broker-agent"


@pytest.fixture
def conn(database_url: str) -> Iterator[Connection]:
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


@pytest.fixture
def start_agent(account_broker: AccountBroker, database_url: str) -> Iterator[Callable[..., BrokerAgent]]:
    """Start an agent for the module's broker, once it has made its first resync (and so recorded itself);
    every one still running is stopped at the end."""
    started: list[BrokerAgent] = []

    def start(**options: Any) -> BrokerAgent:
        config = AgentConfig(database_url, account_broker.accounts_dir, broker_pid=account_broker.pid, **options)
        agent = BrokerAgent(config).start()
        started.append(agent)
        wait_for(lambda: agent.applied_revision is not None, "the agent's first resync")
        return agent

    yield start
    for agent in started:
        agent.stop()


def _connects_within(broker: AccountBroker, credential: Credential, deadline_s: float = EFFECT_DEADLINE_S) -> bool:
    """True once a CONNECT with `credential` is accepted, trying until `deadline_s` has passed."""
    deadline = time.monotonic() + deadline_s
    while True:
        probe = Probe(broker.server.port, credential)
        try:
            if probe.connect() == SUCCESS:
                return True
        finally:
            probe.close()
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)


def _refused(broker: AccountBroker, credential: Credential) -> bool:
    probe = Probe(broker.server.port, credential)
    try:
        return probe.connect() == NOT_AUTHORIZED
    finally:
        probe.close()


def test_device_provisioned_in_the_database_connects_within_a_second(
    account_broker: AccountBroker, conn: Connection, start_agent: Callable[..., BrokerAgent]
) -> None:
    start_agent(name="agent-a")

    credential = accounts.add_device(conn, DeviceSpec("agent-truck-1"))
    applied = delivery.wait_applied(conn)

    assert applied.complete, applied.describe()
    assert applied.applied == ("agent-a",)
    assert _connects_within(account_broker, credential)


def test_rotate_and_revoke_take_effect_through_the_agent(
    account_broker: AccountBroker, conn: Connection, start_agent: Callable[..., BrokerAgent]
) -> None:
    start_agent()
    old = accounts.add_device(conn, DeviceSpec("agent-truck-2"))
    assert delivery.wait_applied(conn).complete
    assert _connects_within(account_broker, old)
    connected = Probe(account_broker.server.port, old)
    assert connected.connect() == SUCCESS

    new = accounts.rotate(conn, old.username, roles={Role.DEVICE})
    assert delivery.wait_applied(conn).complete

    try:
        assert connected.lost.wait(TIMEOUT_S), "the connection made with the old secret ends at the reload"
    finally:
        connected.close()
    assert _refused(account_broker, old)
    assert _connects_within(account_broker, new)
    accounts.revoke(conn, new.username)
    assert delivery.wait_applied(conn).complete
    assert _refused(account_broker, new)


def test_a_change_made_while_no_agent_runs_is_reported_and_applied_when_one_starts(
    account_broker: AccountBroker, conn: Connection, start_agent: Callable[..., BrokerAgent]
) -> None:
    first = start_agent()
    first.stop()

    credential = accounts.add_device(conn, DeviceSpec("agent-truck-3"))
    nobody = delivery.wait_applied(conn)

    assert not nobody.complete
    assert (nobody.applied, nobody.waiting) == ((), ())
    assert "NOT in effect" in nobody.describe()
    assert _refused(account_broker, credential)
    start_agent()
    assert _connects_within(account_broker, credential)


def test_a_change_that_sent_no_notify_is_applied_by_the_periodic_resync(
    account_broker: AccountBroker, conn: Connection, start_agent: Callable[..., BrokerAgent]
) -> None:
    start_agent(resync_interval_s=0.3)

    # As if the NOTIFY were lost: with triggers off, neither the revision nor a NOTIFY moves.
    conn.execute("SET session_replication_role = replica")
    credential = accounts.add_device(conn, DeviceSpec("agent-truck-4"))
    conn.execute("SET session_replication_role = DEFAULT")

    assert _connects_within(account_broker, credential)


def test_agent_reconnects_after_losing_the_database_and_resyncs(
    account_broker: AccountBroker, conn: Connection, start_agent: Callable[..., BrokerAgent], database_url: str
) -> None:
    start_agent(name="agent-reconnect")
    name = database_url.rsplit("/", 1)[1]

    # The agent's LISTEN connection is the only other client of this test's database.
    ended = conn.execute(
        "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
        (name,),
    ).fetchone()
    assert ended == (1,)
    credential = accounts.add_device(conn, DeviceSpec("agent-truck-5"))

    assert _connects_within(account_broker, credential)
    assert delivery.wait_applied(conn).applied == ("agent-reconnect",)


def test_wait_ignores_agents_not_seen_for_a_long_time(conn: Connection) -> None:
    conn.execute(
        "INSERT INTO mqtt_broker_agents (name, host, accounts_dir, applied_revision, applied_at, seen_at)"
        " VALUES ('gone', 'elsewhere', '/srv/accounts', 0, now() - interval '1 day', now() - interval '1 day')"
    )
    revision = delivery.request_reload(conn)

    state = delivery.wait_applied(conn, revision)

    assert (state.applied, state.waiting) == ((), ())
