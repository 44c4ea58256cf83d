"""The real servers behind every integration test: they answer, come back after SIGKILL, and keep state."""

from __future__ import annotations

import queue
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import urlsplit

import paho.mqtt.client as mqtt
import psycopg
import pytest
import redis
from paho.mqtt.enums import CallbackAPIVersion
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from broker.process import mqtt_answers, start_mosquitto
from stack.postgres import start_postgres
from stack.process import PortInUseError, ServerProcess
from stack.redis import redis_answers, start_redis

pytestmark = pytest.mark.integration

TIMEOUT_S = 5


class MqttTestClient:
    """A paho MQTT 5 client on its own network thread, with received messages in a queue."""

    def __init__(self, url: str, client_id: str = "", *, clean_start: bool = True, session_expiry_s: int = 0) -> None:
        parts = urlsplit(url)
        self._host, self._port = parts.hostname or "127.0.0.1", parts.port or 1883
        self._clean_start = clean_start
        self._session_expiry_s = session_expiry_s
        self.messages: queue.Queue[mqtt.MQTTMessage] = queue.Queue()
        self.session_present: bool | None = None
        self._connected = threading.Event()
        self._subscribed = threading.Event()
        self.client = mqtt.Client(
            callback_api_version=CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5
        )
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = lambda *_: self._subscribed.set()
        self.client.on_message = lambda _client, _userdata, message: self.messages.put(message)

    def _on_connect(self, _client: mqtt.Client, _userdata: Any, flags: Any, reason_code: Any, _props: Any) -> None:
        assert not reason_code.is_failure, reason_code
        self.session_present = flags.session_present
        self._connected.set()

    def __enter__(self) -> MqttTestClient:
        properties = Properties(PacketTypes.CONNECT)
        properties.SessionExpiryInterval = self._session_expiry_s
        self.client.connect(self._host, self._port, clean_start=self._clean_start, properties=properties)
        self.client.loop_start()
        assert self._connected.wait(TIMEOUT_S), "no CONNACK"
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.client.disconnect()
        self.client.loop_stop()

    def subscribe(self, topic: str) -> None:
        self._subscribed.clear()
        self.client.subscribe(topic, qos=1)
        assert self._subscribed.wait(TIMEOUT_S), "no SUBACK"

    def publish(self, topic: str, payload: bytes) -> None:
        self.client.publish(topic, payload, qos=1).wait_for_publish(TIMEOUT_S)

    def receive(self) -> mqtt.MQTTMessage:
        return self.messages.get(timeout=TIMEOUT_S)


@pytest.fixture
def own_dir(servers_dir: Path) -> Path:
    """A folder for a server of this test's own, inside the session folder the servers' users can enter."""
    path = servers_dir / uuid.uuid4().hex[:8]
    path.mkdir(mode=0o755)
    return path


def _topic() -> str:
    return f"test/{uuid.uuid4().hex}"


def test_mosquitto_fixture_delivers_a_published_message(mqtt_url: str) -> None:
    topic = _topic()
    with MqttTestClient(mqtt_url) as subscriber, MqttTestClient(mqtt_url) as publisher:
        subscriber.subscribe(topic)
        publisher.publish(topic, b"hello")

        message = subscriber.receive()

    assert (message.topic, message.payload, message.qos) == (topic, b"hello", 1)


def test_redis_fixture_stores_and_returns_a_value(redis_url: str) -> None:
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.dbsize() == 0
        client.set("greeting", "hello")
        assert client.get("greeting") == b"hello"
    finally:
        client.close()


def test_database_url_is_a_migrated_database_of_its_own(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        assert conn.execute("SELECT 1").fetchone() == (1,)
        assert conn.execute("SELECT current_database()").fetchone() == (urlsplit(database_url).path[1:],)
        tables = {row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")}

    assert {"devices", "telemetry", "rejected_messages"} <= tables


def test_mosquitto_comes_back_on_the_same_port_after_sigkill(own_dir: Path) -> None:
    with start_mosquitto(own_dir) as server:
        server.kill()
        assert not server.alive
        assert not mqtt_answers(server.port)

        server.restart()

        assert mqtt_answers(server.port)
        assert server.url == f"mqtt://127.0.0.1:{server.port}"


def test_redis_comes_back_on_the_same_port_after_sigkill(own_dir: Path) -> None:
    with start_redis(own_dir) as server:
        server.kill()
        assert not redis_answers(server.port)

        server.restart()

        assert redis_answers(server.port)


def test_postgres_keeps_committed_rows_across_sigkill_in_fast_mode(own_dir: Path) -> None:
    with start_postgres(own_dir / "data", fast=True) as server:
        with psycopg.connect(server.url, autocommit=True) as conn:
            conn.execute("CREATE TABLE survivors (id int)")
            conn.execute("INSERT INTO survivors VALUES (1)")

        server.kill()
        server.restart()

        with psycopg.connect(server.url) as conn:
            assert conn.execute("SELECT id FROM survivors").fetchall() == [(1,)]


def test_mosquitto_keeps_a_queued_message_for_an_offline_session_across_a_restart(own_dir: Path) -> None:
    topic, client_id = _topic(), f"persist-{uuid.uuid4().hex[:8]}"
    with start_mosquitto(own_dir) as server:
        session = {"client_id": client_id, "clean_start": False, "session_expiry_s": 600}
        with MqttTestClient(server.url, **session) as subscriber:
            subscriber.subscribe(topic)
        with MqttTestClient(server.url) as publisher:
            publisher.publish(topic, b"queued while offline")

        # A graceful stop writes the persistence file; the next start reads it back.
        server.stop()
        server.restart()

        with MqttTestClient(server.url, **session) as subscriber:
            message = subscriber.receive()
            assert subscriber.session_present

    assert message.payload == b"queued while offline"


@pytest.fixture
def taken_port() -> Iterator[int]:
    """A port something else already listens on."""
    with socket.socket() as blocker:
        blocker.bind(("127.0.0.1", 0))
        blocker.listen()
        yield blocker.getsockname()[1]


@pytest.mark.parametrize(
    "start",
    [start_mosquitto, start_redis, lambda path, port: start_postgres(path / "data", port)],
    ids=["mosquitto", "redis", "postgres"],
)
def test_start_on_a_taken_port_fails_at_once_naming_the_port(
    own_dir: Path, taken_port: int, start: Callable[[Path, int], ServerProcess]
) -> None:
    started = time.monotonic()

    with pytest.raises(PortInUseError, match=f"port {taken_port} "):
        start(own_dir, taken_port)

    assert time.monotonic() - started < 1
