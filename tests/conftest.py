"""Real Mosquitto, Redis and PostgreSQL for the integration tests, started once per session.

Session fixtures (`mosquitto_server`, `redis_server`, `postgres_server`) start the Debian binaries on
free loopback ports, each in its own process group, stopped at the end of the session. Set
FLEETBRIDGE_TEST_MQTT_URL, FLEETBRIDGE_TEST_REDIS_URL or FLEETBRIDGE_TEST_DATABASE_URL to use an
existing server instead (`redis_url` flushes it, `database_url` creates and drops databases in it).

Function fixtures give each test a clean slate: `database_url` a fresh database cloned from a migrated
template, `redis_url` an empty Redis, `mqtt_url` the broker (use a unique topic per test).
"""

from __future__ import annotations

import os
import shutil
import signal
import stat
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
import redis
from psycopg import sql

from broker.process import start_mosquitto
from models.migrate import migrate
from models.partitions import maintain
from stack.postgres import start_postgres
from stack.process import ServerProcess
from stack.redis import start_redis

MQTT_URL_VAR = "FLEETBRIDGE_TEST_MQTT_URL"
REDIS_URL_VAR = "FLEETBRIDGE_TEST_REDIS_URL"
DATABASE_URL_VAR = "FLEETBRIDGE_TEST_DATABASE_URL"
SERVER_FIXTURES = frozenset({"mosquitto_server", "redis_server", "postgres_server"})


@dataclass(frozen=True, slots=True)
class ExternalServer:
    """A server the environment pointed at: only its URL is known (it cannot be killed or restarted)."""

    url: str


Server = ServerProcess | ExternalServer


def pytest_configure(config: pytest.Config) -> None:
    """Turn SIGTERM into KeyboardInterrupt, so that pytest still stops the servers when ended by it.

    `timeout` (which wraps the suite in CI) ends pytest with SIGTERM; by default that skips fixture
    teardown and atexit, and the servers, each in a session of its own, would outlive the run.
    """
    if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, signal.default_int_handler)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Mark every test that uses a real server `integration`, so `-m "not integration"` skips them all."""
    for item in items:
        if SERVER_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)


def with_database(url: str, name: str) -> str:
    """`url` (postgresql://…/db) pointing at database `name` instead."""
    parts = urlsplit(url)
    return urlunsplit(parts._replace(path=f"/{name}"))


def _enterable(path: Path, stop_at: Path) -> None:
    """Let the servers' own users (postgres, mosquitto) traverse `path` and its parents up to `stop_at`.

    pytest makes its temporary folders 0700; only the x bit is added, so nobody else can list them.
    """
    for folder in (path, *path.parents):
        folder.chmod(folder.stat().st_mode | stat.S_IXGRP | stat.S_IXOTH)
        if folder == stop_at:
            break


@pytest.fixture(scope="session")
def servers_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A session folder the servers' users can enter; each server keeps its data in a subfolder."""
    path = tmp_path_factory.mktemp("servers")
    if os.geteuid() == 0:
        # Up to pytest's per-user root (/tmp/pytest-of-root), or a --basetemp folder: never loosen
        # anything above; the launchers name any folder that still blocks a server's user.
        base = tmp_path_factory.getbasetemp()
        if base.name.startswith("popen-gw"):  # a parallel worker's folder, inside the run's
            base = base.parent
        _enterable(path, stop_at=base.parent if base.parent.name.startswith("pytest-of-") else base)
    return path


@pytest.fixture(scope="session")
def mosquitto_server(servers_dir: Path) -> Iterator[Server]:
    """The session's Mosquitto (anonymous, loopback), or the broker FLEETBRIDGE_TEST_MQTT_URL names."""
    if url := os.environ.get(MQTT_URL_VAR):
        yield ExternalServer(url)
        return
    with start_mosquitto(servers_dir / "mosquitto") as server:
        yield server


@pytest.fixture(scope="session")
def redis_server(servers_dir: Path) -> Iterator[Server]:
    """The session's Redis, or the one FLEETBRIDGE_TEST_REDIS_URL names."""
    if url := os.environ.get(REDIS_URL_VAR):
        yield ExternalServer(url)
        return
    with start_redis(servers_dir / "redis") as server:
        yield server


@pytest.fixture(scope="session")
def postgres_server(servers_dir: Path) -> Iterator[Server]:
    """The session's PostgreSQL (fast: no fsync), or the one FLEETBRIDGE_TEST_DATABASE_URL names.

    Its `url` names a database to connect to for administration; tests want `database_url`.
    """
    if url := os.environ.get(DATABASE_URL_VAR):
        yield ExternalServer(url)
        return
    data_dir = servers_dir / "postgres" / "data"
    with start_postgres(data_dir, fast=True) as server:
        yield server
    # A cluster is tens of megabytes and pytest keeps the last few sessions' folders: keep only the log.
    shutil.rmtree(data_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def database_template(postgres_server: Server) -> Iterator[str]:
    """The name of a database migrated once per session, with today's partitions, to clone per test."""
    # A per-session name: two sessions sharing one external server must not clone each other's template.
    name = f"fleet_template_{uuid.uuid4().hex[:12]}"
    _admin(postgres_server.url, sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    with psycopg.connect(with_database(postgres_server.url, name), autocommit=True) as conn:
        migrate(conn)
        maintain(conn, now=datetime.now(UTC))
    yield name
    _admin(postgres_server.url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def database_url(postgres_server: Server, database_template: str) -> Iterator[str]:
    """A fresh, migrated database of its own for one test, dropped afterwards."""
    name = f"t_{uuid.uuid4().hex}"
    _admin(
        postgres_server.url,
        sql.SQL("CREATE DATABASE {} TEMPLATE {}").format(sql.Identifier(name), sql.Identifier(database_template)),
    )
    yield with_database(postgres_server.url, name)
    # FORCE: a test that leaked a connection must not make the next test's setup fail.
    _admin(postgres_server.url, sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture
def redis_url(redis_server: Server) -> str:
    """The Redis URL, the server flushed (FLUSHALL) for this test."""
    client = redis.Redis.from_url(redis_server.url)
    try:
        client.flushall()
    finally:
        client.close()
    return redis_server.url


@pytest.fixture
def mqtt_url(mosquitto_server: Server) -> str:
    """The broker URL, mqtt://127.0.0.1:PORT; the broker is shared, so use a unique topic per test."""
    return mosquitto_server.url


def _admin(url: str, statement: sql.Composed) -> None:
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(statement)
