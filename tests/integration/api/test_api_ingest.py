"""HTTP ingest against the real thing: a Mosquitto enforcing accounts and ACLs, a bridge, Redis,
PostgreSQL and the API, each logged in with its own broker account.

Devices authenticate with their own MQTT secrets; the API forwards on their telemetry topics with the
`api` account and answers from the bridge's `persisted` / `rejected` replies. Outcomes are read back
from PostgreSQL (telemetry, dead letters), the REST history and the live WebSocket, never from the
API's answer alone.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import httpx
import msgspec
import psycopg
import pytest
from websockets.asyncio.client import connect

from api.server import running
from broker import accounts
from broker.accounts import Credential, DeviceSpec
from broker.acl import Role
from broker.passwords import new_secret
from broker.process import start_mosquitto
from config import Settings, load_settings
from models.telemetry import sensor_identity
from tests.integration.api.conftest import TEST_JWT_SECRET, mint_token
from tests.integration.bridge.conftest import running_bridge
from tests.integration.broker import conftest as broker_fixtures
from tests.integration.broker.conftest import AccountBroker

pytestmark = pytest.mark.integration

# The broker tests' Mosquitto with accounts, named here so that pytest finds it for these tests too.
account_broker = broker_fixtures.account_broker

TIMEOUT_S = 10.0
NDJSON = "application/x-ndjson"


@dataclass
class Provisioned:
    """One test's accounts in its own database, loaded into the module's broker."""

    broker: AccountBroker
    database_url: str
    redis_url: str
    a: Credential
    b: Credential
    bridge: Credential
    api: Credential

    def settings(self, **overrides: str) -> Settings:
        """Bridge and API settings: each with its own broker account, sharing the test's Redis and database."""
        port = self.broker.server.port
        env = {
            "FLEETBRIDGE_MQTT_URL": f"mqtt://{self.bridge.username}:{self.bridge.secret}@127.0.0.1:{port}",
            "FLEETBRIDGE_MQTT_CLIENT_ID": f"bridge-{uuid.uuid4().hex[:8]}",
            "FLEETBRIDGE_MQTT_SHARE_GROUP": f"g{uuid.uuid4().hex[:8]}",
            "FLEETBRIDGE_REDIS_URL": self.redis_url,
            "FLEETBRIDGE_DATABASE_URL": self.database_url,
            "FLEETBRIDGE_BRIDGE_BATCH_MAX_AGE_MS": "20",
            "FLEETBRIDGE_API_JWT_SECRET": TEST_JWT_SECRET,
            "FLEETBRIDGE_API_MQTT_URL": f"mqtt://{self.api.username}:{self.api.secret}@127.0.0.1:{port}",
        }
        return load_settings(env | {f"FLEETBRIDGE_INGEST_{key.upper()}": value for key, value in overrides.items()})

    def rows(self, device: Credential) -> list[tuple[int, int]]:
        """(boot, seq) of every telemetry row of `device`, duplicates included."""
        with psycopg.connect(self.database_url) as conn:
            found = conn.execute(
                "SELECT boot, seq FROM telemetry WHERE device_id = %s ORDER BY boot, seq", (device.username,)
            ).fetchall()
        return [(boot, seq) for boot, seq in found]

    def dead_letters(self, device: Credential) -> list[tuple[int, str, bytes]]:
        """(sample_index, reason, payload) of every dead letter of `device`."""
        with psycopg.connect(self.database_url) as conn:
            found = conn.execute(
                "SELECT sample_index, reason, payload FROM rejected_messages WHERE device_id = %s ORDER BY id",
                (device.username,),
            ).fetchall()
        return [(index, reason, bytes(payload)) for index, reason, payload in found]


@pytest.fixture
def provisioned(account_broker: AccountBroker, database_url: str, redis_url: str) -> Provisioned:
    suffix = uuid.uuid4().hex[:8]
    with psycopg.connect(database_url, autocommit=True) as conn:
        a, b = accounts.import_devices(conn, [DeviceSpec(f"http-a-{suffix}"), DeviceSpec(f"http-b-{suffix}")])
        # Names of this test's own: the module's broker keeps the persistent sessions of earlier tests'
        # bridges, and Mosquitto 2.0.11 crashes when a reload changes the secret of an account whose
        # session is offline and that client id connects again (docs/security.md, known limits).
        bridge = accounts.add_service_account(conn, Role.BRIDGE, f"bridge-{suffix}")
        api = accounts.add_service_account(conn, Role.API, f"api-{suffix}")
        account_broker.apply(conn)
    return Provisioned(account_broker, database_url, redis_url, a, b, bridge, api)


async def wait_for_link(client: httpx.AsyncClient, until: Callable[[bool], bool]) -> dict[str, Any]:
    """Poll /readyz until the state of the API's MQTT link satisfies `until`; fail after TIMEOUT_S."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    while True:
        body: dict[str, Any] = (await client.get("/readyz")).json()
        if until(bool(body["checks"].get("mqtt", {}).get("ok"))):
            return body
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the API's MQTT link did not change as expected: {body}")
        await asyncio.sleep(0.05)


async def wait_until_ready(client: httpx.AsyncClient) -> dict[str, Any]:
    """Poll /readyz until the API's MQTT link is up (it connects in the background at startup)."""
    return await wait_for_link(client, lambda up: up)


@contextlib.asynccontextmanager
async def api_client(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    async with running(settings) as url, httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S + 5) as client:
        await wait_until_ready(client)
        yield client


@contextlib.asynccontextmanager
async def stack(settings: Settings) -> AsyncIterator[httpx.AsyncClient]:
    """A bridge and an API on `settings`; the API's client once its MQTT link is up."""
    async with running_bridge(settings), api_client(settings) as client:
        yield client


def sample(seq: int, **fields: Any) -> dict[str, Any]:
    now = datetime.now(UTC) - timedelta(seconds=5)
    return {"seq": seq, "ts": (now + timedelta(milliseconds=seq)).isoformat(), "metrics": {"fuel": 50.0}} | fields


def ndjson(*lines: Any) -> bytes:
    return b"\n".join(line if isinstance(line, bytes) else json.dumps(line).encode() for line in lines) + b"\n"


async def ingest(
    client: httpx.AsyncClient,
    device: Credential,
    body: Any,
    content_type: str = "application/json",
    secret: str | None = None,
) -> httpx.Response:
    content = body if isinstance(body, bytes) else json.dumps(body).encode()
    return await client.post(
        "/api/v1/ingest",
        content=content,
        headers={"Content-Type": content_type},
        auth=(device.username, device.secret if secret is None else secret),
    )


# --- stored, exactly like over MQTT ------------------------------------------------------------------


async def test_ingest_single_message_is_stored_and_shows_in_history_and_on_the_live_stream(
    provisioned: Provisioned,
) -> None:
    settings = provisioned.settings()
    device = provisioned.a
    async with stack(settings) as client:
        token = mint_token(settings, "viewer", "viewer")
        live_url = str(client.base_url).replace("http://", "ws://") + "/api/v1/live?" + urlencode({"token": token})
        async with connect(live_url, open_timeout=TIMEOUT_S) as ws:
            await ws.send(json.dumps({"action": "subscribe", "devices": [device.username]}))
            while json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))["type"] != "subscribed":
                pass

            response = await ingest(client, device, sample(7, pos={"lat": 52.5, "lon": 13.4}, metrics={"fuel": 42.5}))

            update = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT_S))
        history = await client.get(
            f"/api/v1/devices/{device.username}/telemetry", headers={"Authorization": f"Bearer {token}"}
        )

    assert response.status_code == 200, response.text
    assert response.json() == {
        "device_id": device.username,
        "messages": [{"line": 1, "status": "stored", "stored": [[0, 7, 7]], "rejected": [], "unconfirmed": 0}],
        "stored_samples": 1,
        "rejected": 0,
        "unconfirmed_messages": 0,
    }
    assert provisioned.rows(device) == [(0, 7)]
    assert history.status_code == 200
    assert [(item["seq"], item["metrics"]["fuel"]) for item in history.json()["items"]] == [(7, 42.5)]
    assert update["type"] == "state"
    assert update["device_id"] == device.username
    assert update["changes"]["metrics"]["fuel"]["value"] == 42.5
    assert update["changes"]["position"]["lat"] == 52.5


async def test_ingest_messagepack_and_a_batch_message_are_stored(provisioned: Provisioned) -> None:
    device = provisioned.a
    async with stack(provisioned.settings()) as client:
        packed = msgspec.msgpack.encode(sample(1))
        single = await ingest(client, device, packed, "application/msgpack")
        batch = await ingest(client, device, {"samples": [sample(2), sample(3, boot=1)]})

    assert single.status_code == 200, single.text
    assert single.json()["messages"][0]["stored"] == [[0, 1, 1]]
    assert batch.status_code == 200, batch.text
    assert batch.json()["messages"][0]["stored"] == [[0, 2, 2], [1, 3, 3]]
    assert provisioned.rows(device) == [(0, 1), (0, 2), (1, 3)]


async def test_ingest_ndjson_stores_the_good_lines_and_dead_letters_the_bad_one_alone(
    provisioned: Provisioned,
) -> None:
    device = provisioned.a
    bad_line = b'{"seq": 2, "ts": not json'
    out_of_range = sample(5, metrics={"fuel": 150.0})
    body = ndjson(sample(1), bad_line, {"samples": [sample(3), sample(4)]}, b"", {"samples": [out_of_range, sample(6)]})
    async with stack(provisioned.settings()) as client:
        response = await ingest(client, device, body, NDJSON)

    assert response.status_code == 200, response.text
    report = response.json()
    assert [(m["line"], m["status"], m["stored"]) for m in report["messages"]] == [
        (1, "stored", [[0, 1, 1]]),
        (2, "rejected", []),
        (3, "stored", [[0, 3, 4]]),
        (5, "partial", [[0, 6, 6]]),
    ]
    [whole] = report["messages"][1]["rejected"]
    assert whole["index"] is None
    assert whole["reason"].startswith("not valid JSON telemetry")
    assert report["messages"][3]["rejected"] == [
        {"reason": "metric fuel=150.0 outside 0…100 %", "index": 0, "seq": 5, "boot": 0}
    ]
    assert (report["stored_samples"], report["rejected"], report["unconfirmed_messages"]) == (4, 2, 0)
    assert provisioned.rows(device) == [(0, 1), (0, 3), (0, 4), (0, 6)]
    letters = provisioned.dead_letters(device)
    assert [(index, reason) for index, reason, _ in letters] == [
        (-1, whole["reason"]),
        (0, "metric fuel=150.0 outside 0…100 %"),
    ]
    assert letters[0][2] == bad_line, "the bad line is kept as it was sent"


async def test_ingest_stores_epoch_millisecond_samples_and_field_sensor_readings_and_names_each_refusal(
    provisioned: Provisioned,
) -> None:
    device = provisioned.a
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=5)
    at_ms = int(at.timestamp() * 1000)
    readings = [
        {"sensorId": "temperature", "timestamp": at_ms, "value": 21.5, "unit": "°C", "quality": "good"},
        {
            "sensorId": f"{device.username}.flow",
            "timestamp": at_ms,
            "min": 1,
            "max": 3,
            "avg": 2,
            "count": 50,
            "stdDev": 0.4,
        },
        {"sensorId": "pressure", "timestamp": at_ms, "value": 80, "unit": "bar"},
    ]
    settings = provisioned.settings()
    async with stack(settings) as client:
        epoch_ms = await ingest(client, device, {"seq": 1, "ts": at_ms, "metrics": {"fuel": 50.0}})
        sensors = await ingest(client, device, readings)
        history = await client.get(
            f"/api/v1/devices/{device.username}/telemetry",
            headers={"Authorization": f"Bearer {mint_token(settings, 'viewer', 'viewer')}"},
        )

    assert epoch_ms.status_code == 200, epoch_ms.text
    assert epoch_ms.json()["messages"][0]["stored"] == [[0, 1, 1]]
    assert sensors.status_code == 200, sensors.text
    (report,) = sensors.json()["messages"]
    assert report["status"] == "partial"
    temperature = sensor_identity("temperature", aggregate=False, ts=at)
    flow = sensor_identity("flow", aggregate=True, ts=at)
    assert sorted(map(tuple, report["stored"])) == sorted([(*temperature, temperature[1]), (*flow, flow[1])])
    boot, seq = sensor_identity("pressure", aggregate=False, ts=at)
    assert report["rejected"] == [
        {"reason": "unit 'bar' of sensor 'pressure' is not pressure's unit 'PSI'", "index": 2, "seq": seq, "boot": boot}
    ]
    items = history.json()["items"]
    assert {(i["seq"], i["ts"]) for i in items if i["metrics"].get("fuel") == 50.0} == {
        (1, at.isoformat().replace("+00:00", "Z"))
    }
    assert [i["metrics"]["temperature"] for i in items if "temperature" in i["metrics"]] == [21.5]
    assert [i["aggregates"]["flow"] for i in items if i["aggregates"]] == [
        {"min": 1.0, "max": 3.0, "avg": 2.0, "count": 50, "std": 0.4}
    ]


async def test_ingest_the_same_upload_twice_stores_nothing_twice(provisioned: Provisioned) -> None:
    device = provisioned.a
    body = ndjson(*(sample(seq) for seq in range(1, 21)))
    async with stack(provisioned.settings()) as client:
        first = await ingest(client, device, body, NDJSON)
        second = await ingest(client, device, body, NDJSON)

    assert first.status_code == second.status_code == 200
    # The second answer confirms the same samples: they are in the database (stored once, by the first).
    assert first.json()["stored_samples"] == second.json()["stored_samples"] == 20
    assert provisioned.rows(device) == [(0, seq) for seq in range(1, 21)]


async def test_ingest_concurrent_requests_of_one_device_each_get_their_own_outcomes(provisioned: Provisioned) -> None:
    device, other = provisioned.a, provisioned.b
    bodies = [
        # Each broken line fails at another byte, so each refusal's reason names its own line.
        ndjson(sample(10 * n + 1), b'{"n": ' + b" " * n + b"oops}", sample(10 * n + 2, metrics={"fuel": -1.0 - n}))
        for n in range(5)
    ]
    async with stack(provisioned.settings()) as client:
        answers = await asyncio.gather(
            *(ingest(client, device, body, NDJSON) for body in bodies), ingest(client, other, sample(1))
        )

    assert [answer.status_code for answer in answers] == [200] * 6
    for n, answer in enumerate(answers[:5]):
        messages = answer.json()["messages"]
        assert [m["stored"] for m in messages] == [[[0, 10 * n + 1, 10 * n + 1]], [], []]
        assert messages[1]["rejected"][0]["reason"].endswith(f"invalid character (byte {6 + n})"), messages[1]
        assert messages[2]["rejected"] == [
            {"reason": f"metric fuel={-1.0 - n} outside 0…100 %", "index": 0, "seq": 10 * n + 2, "boot": 0}
        ]
    assert answers[5].json()["messages"][0]["stored"] == [[0, 1, 1]]
    assert provisioned.rows(device) == [(0, 10 * n + 1) for n in range(5)]
    assert len(provisioned.dead_letters(device)) == 10


async def test_ingest_answers_422_when_every_message_is_refused_and_keeps_the_dead_letters(
    provisioned: Provisioned,
) -> None:
    device = provisioned.a
    async with stack(provisioned.settings()) as client:
        response = await ingest(client, device, b"[1, 2")

    assert response.status_code == 422
    assert response.headers["content-type"] == "application/problem+json"
    problem = response.json()
    assert problem["messages"][0]["status"] == "rejected"
    assert problem["messages"][0]["rejected"][0]["reason"].startswith("not valid JSON telemetry")
    assert [index for index, _, _ in provisioned.dead_letters(device)] == [-1]


# --- who may send ------------------------------------------------------------------------------------


async def test_ingest_refuses_wrong_foreign_revoked_and_missing_credentials(provisioned: Provisioned) -> None:
    a, b = provisioned.a, provisioned.b
    settings = provisioned.settings(auth_failures_per_minute="100")
    async with stack(settings) as client:
        with psycopg.connect(provisioned.database_url, autocommit=True) as conn:
            assert accounts.revoke(conn, b.username)
        answers = {
            "wrong secret": await ingest(client, a, sample(1), secret=new_secret()),
            "another device's secret": await ingest(client, a, sample(1), secret=b.secret),
            "revoked": await ingest(client, b, sample(1)),
            "unknown device": await ingest(client, Credential("http-ghost", a.secret), sample(1)),
            "a service account": await ingest(client, provisioned.api, sample(1)),
            "empty secret": await ingest(client, a, sample(1), secret=""),
        }
        missing = await client.post("/api/v1/ingest", json=sample(1))
        operator = await client.post(
            "/api/v1/ingest",
            json=sample(1),
            headers={"Authorization": f"Bearer {mint_token(settings, 'ada', 'admin')}"},
        )
        genuine = await ingest(client, a, sample(1))

    assert {what: r.status_code for what, r in answers.items()} == dict.fromkeys(answers, 401)
    assert {r.json()["detail"] for r in answers.values()} == {"invalid device credentials"}
    for response in (missing, operator):
        assert response.status_code == 401
        assert response.headers["www-authenticate"].startswith("Basic")
    assert genuine.status_code == 200, "the right secret still works"
    assert provisioned.rows(a) == [(0, 1)]
    assert provisioned.rows(b) == []


async def test_ingest_refuses_a_disabled_device_with_403(provisioned: Provisioned) -> None:
    with psycopg.connect(provisioned.database_url, autocommit=True) as conn:
        accounts.set_device_disabled(conn, provisioned.a.username, True)
    async with stack(provisioned.settings()) as client:
        disabled = await ingest(client, provisioned.a, sample(1))
        wrong = await ingest(client, provisioned.a, sample(1), secret=new_secret())

    assert disabled.status_code == 403
    assert "disabled" in disabled.json()["detail"]
    assert wrong.status_code == 401, "a disabled device's wrong secret learns nothing more"
    assert provisioned.rows(provisioned.a) == []


# --- limits ------------------------------------------------------------------------------------------


async def test_ingest_limits_messages_per_device_with_429_and_retry_after(provisioned: Provisioned) -> None:
    async with stack(provisioned.settings(messages_per_minute="3")) as client:
        within = await ingest(client, provisioned.a, ndjson(sample(1), sample(2)), NDJSON)
        last = await ingest(client, provisioned.a, sample(3))
        over = await ingest(client, provisioned.a, sample(4))
        other_device = await ingest(client, provisioned.b, sample(1))
        never_fits = await ingest(client, provisioned.b, ndjson(*(sample(seq) for seq in range(4))), NDJSON)

    assert (within.status_code, last.status_code) == (200, 200)
    assert over.status_code == 429
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert over.headers["content-type"] == "application/problem+json"
    assert other_device.status_code == 200, "the limit is per device"
    assert never_fits.status_code == 413
    assert provisioned.rows(provisioned.a) == [(0, 1), (0, 2), (0, 3)]


async def test_ingest_limits_failed_authentications_per_address(provisioned: Provisioned) -> None:
    async with stack(provisioned.settings(auth_failures_per_minute="2")) as client:
        failures = [(await ingest(client, provisioned.a, sample(1), secret=new_secret())).status_code for _ in range(2)]
        blocked = await ingest(client, provisioned.b, sample(1))

    assert failures == [401, 401]
    assert blocked.status_code == 429
    assert int(blocked.headers["retry-after"]) >= 1
    assert provisioned.rows(provisioned.b) == []


async def test_ingest_bounds_the_body_and_the_messages_per_request(provisioned: Provisioned) -> None:
    async with stack(provisioned.settings(max_body_bytes="2000", max_messages="3")) as client:
        too_big = await ingest(
            client, provisioned.a, ndjson(*(sample(seq, note="x" * 100) for seq in range(20))), NDJSON
        )
        too_many = await ingest(client, provisioned.a, ndjson(*(sample(seq) for seq in range(4))), NDJSON)
        wrong_type = await ingest(client, provisioned.a, b"seq=1", "application/x-www-form-urlencoded")
        empty = await ingest(client, provisioned.a, b"\n\n", NDJSON)

    assert too_big.status_code == 413
    assert "2000 bytes" in too_big.json()["detail"]
    assert too_many.status_code == 413
    assert "more than 3 messages" in too_many.json()["detail"]
    assert wrong_type.status_code == 415
    assert "application/x-ndjson" in wrong_type.json()["detail"]
    assert empty.status_code == 422
    assert provisioned.rows(provisioned.a) == []


# --- when the bridge or the broker is away -------------------------------------------------------------


async def test_ingest_answers_504_when_the_bridge_is_down_and_a_retry_stores_once(provisioned: Provisioned) -> None:
    settings = provisioned.settings(reply_timeout_s="1.0")
    device = provisioned.a
    body = ndjson(sample(1), sample(2))
    async with running_bridge(settings):
        pass  # leaves the bridge's persistent session on the broker: it queues what comes meanwhile
    async with api_client(settings) as client:
        down = await ingest(client, device, body, NDJSON)
        assert provisioned.rows(device) == []
        async with running_bridge(settings):
            retried = await ingest(client, device, body, NDJSON)

    assert down.status_code == 504
    assert down.headers["retry-after"]
    assert down.json()["detail"].startswith("the bridge did not confirm every message within 1 s")
    assert "safe" in down.json()["detail"]
    assert [m["status"] for m in down.json()["messages"]] == ["unconfirmed", "unconfirmed"]
    assert down.json()["stored_samples"] == 0, "nothing is claimed stored"
    assert retried.status_code == 200, retried.text
    assert provisioned.rows(device) == [(0, 1), (0, 2)], "the queued messages and the retry are stored once"


async def test_ingest_answers_503_and_readyz_reports_the_link_when_the_broker_is_unreachable(
    provisioned: Provisioned,
) -> None:
    settings = provisioned.settings()
    # A port nobody listens on: the link keeps retrying in the background.
    with contextlib.closing(socket.socket()) as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    settings = replace(settings, api=replace(settings.api, mqtt_url=f"mqtt://nobody:x@127.0.0.1:{port}"))
    async with running(settings) as url, httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
        response = await ingest(client, provisioned.a, sample(1))
        ready = await client.get("/readyz")

    assert response.status_code == 503
    assert response.headers["retry-after"]
    assert response.json()["messages"][0]["status"] == "unconfirmed"
    # Reported, not required: the REST API and the operator page still serve without the broker.
    assert ready.status_code == 200
    assert ready.json()["checks"]["mqtt"]["ok"] is False
    assert ready.json()["checks"]["mqtt"]["error"]
    assert provisioned.rows(provisioned.a) == []


async def test_ingest_link_reconnects_by_itself_after_the_broker_comes_back(
    servers_dir: Path, database_url: str, redis_url: str
) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        [device] = accounts.import_devices(conn, [DeviceSpec(f"http-r-{uuid.uuid4().hex[:8]}")])
    with start_mosquitto(servers_dir / f"mosquitto-ingest-{uuid.uuid4().hex[:8]}") as broker:
        settings = load_settings(
            {
                "FLEETBRIDGE_MQTT_URL": broker.url,
                "FLEETBRIDGE_MQTT_CLIENT_ID": f"bridge-{uuid.uuid4().hex[:8]}",
                "FLEETBRIDGE_REDIS_URL": redis_url,
                "FLEETBRIDGE_DATABASE_URL": database_url,
                "FLEETBRIDGE_BRIDGE_BATCH_MAX_AGE_MS": "20",
                "FLEETBRIDGE_BRIDGE_RETRY_MAX_S": "0.5",
                "FLEETBRIDGE_API_JWT_SECRET": TEST_JWT_SECRET,
                "FLEETBRIDGE_API_MQTT_URL": broker.url,
            }
        )
        async with running_bridge(settings) as bridge, api_client(settings) as client:
            before = await ingest(client, device, sample(1))
            broker.kill()
            down = await wait_for_link(client, lambda up: not up)
            during = await ingest(client, device, sample(2))
            broker.restart()
            await wait_until_ready(client)
            await asyncio.wait_for(bridge._source.connected.wait(), TIMEOUT_S)
            after = await ingest(client, device, sample(3))

    assert before.status_code == 200
    assert down["checks"]["mqtt"]["error"]
    assert during.status_code == 503
    assert after.status_code == 200, after.text
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT seq FROM telemetry WHERE device_id = %s ORDER BY seq", (device.username,)
        ).fetchall()
    assert rows == [(1,), (3,)], "the message sent while the link was down was never published"
