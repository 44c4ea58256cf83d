"""One device in detail, changed, provisioned, given a new secret and deleted, over HTTP against real
PostgreSQL and Redis. This API writes no broker files (no accounts folder): every change that the broker
must see is answered as `pending`. test_api_provisioning.py runs the same routes against a real broker."""

from __future__ import annotations

import asyncio

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis

from broker.passwords import verify_secret
from models.state import GEO_KEY, SEEN_KEY, encode_field, state_key

pytestmark = pytest.mark.integration


async def sql(database_url: str, statement: str, params: tuple[object, ...] = ()) -> list[tuple[object, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cursor = await conn.execute(statement, params)
        return await cursor.fetchall() if cursor.description else []


async def test_post_provisions_the_device_and_returns_its_secret_once(
    http: httpx.AsyncClient, database_url: str
) -> None:
    body = {"id": "truck-0100", "kind": "truck", "name": "Red", "group": "north", "metadata": {"plate": "B-1"}}

    created = await http.post("/api/v1/devices", json=body)
    details = await http.get("/api/v1/devices/truck-0100")

    assert created.status_code == 201, created.text
    assert created.headers["cache-control"] == "no-store"
    answer = created.json()
    assert answer["device"]["id"] == "truck-0100"
    assert answer["device"]["group"] == "north"
    assert answer["device"]["metadata"] == {"plate": "B-1"}
    assert answer["device"]["account"]["revoked_at"] is None
    assert answer["broker"]["status"] == "pending"
    assert "NOT in effect: no broker agent is running" in answer["broker"]["detail"]
    [(stored_hash,)] = await sql(database_url, "SELECT secret_hash FROM mqtt_accounts WHERE username = 'truck-0100'")
    assert isinstance(stored_hash, str)
    assert verify_secret(answer["secret"], stored_hash)
    assert details.status_code == 200
    assert "secret" not in details.json()
    assert details.json() == answer["device"]


async def test_post_refuses_a_taken_id_with_409_and_changes_nothing(http: httpx.AsyncClient, database_url: str) -> None:
    first = await http.post("/api/v1/devices", json={"id": "truck-0101", "name": "first"})
    again = await http.post("/api/v1/devices", json={"id": "truck-0101", "name": "second"})
    await sql(database_url, "INSERT INTO mqtt_accounts (username, role) VALUES ('svc-api', 'api')")
    service_name = await http.post("/api/v1/devices", json={"id": "svc-api"})

    assert first.status_code == 201
    assert again.status_code == 409
    assert again.headers["content-type"] == "application/problem+json"
    assert (await http.get("/api/v1/devices/truck-0101")).json()["name"] == "first"
    assert service_name.status_code == 409
    assert "taken" in service_name.json()["detail"]
    assert await sql(database_url, "SELECT id FROM devices WHERE id = 'svc-api'") == []


@pytest.mark.parametrize(
    "body",
    [
        {"id": "bad/id"},
        {"id": "truck-1", "kind": "a b"},
        {"id": "truck-1", "group": "has space"},
        {"id": "truck-1", "unknown": 1},
        {"id": "truck-1", "metadata": {"blob": "x" * 20_000}},
        {"name": "no id"},
    ],
)
async def test_post_refuses_bad_bodies_as_problems(http: httpx.AsyncClient, body: dict[str, object]) -> None:
    response = await http.post("/api/v1/devices", json=body)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


async def test_details_show_presence_and_no_account_for_a_bridge_registered_device(
    http: httpx.AsyncClient, database_url: str
) -> None:
    await sql(
        database_url,
        "INSERT INTO devices (id, presence, presence_source, presence_since)"
        " VALUES ('truck-0102', 'online', 'status', '2026-11-25T18:00:00Z')",
    )

    response = await http.get("/api/v1/devices/truck-0102")
    unknown = await http.get("/api/v1/devices/truck-nobody")
    invalid = await http.get("/api/v1/devices/bad%20id")

    assert response.status_code == 200
    device = response.json()
    assert device["presence"] == {"state": "online", "source": "status", "since": "2026-11-25T18:00:00Z"}
    assert device["account"] is None
    assert unknown.status_code == 404
    assert invalid.status_code == 400


async def test_patch_changes_only_the_given_fields_and_null_clears(http: httpx.AsyncClient) -> None:
    await http.post("/api/v1/devices", json={"id": "truck-0103", "name": "Old", "group": "north", "metadata": {"a": 1}})

    renamed = await http.patch("/api/v1/devices/truck-0103", json={"name": "New", "kind": "van"})
    cleared = await http.patch("/api/v1/devices/truck-0103", json={"name": None, "metadata": {"b": 2}})

    assert renamed.status_code == 200, renamed.text
    assert renamed.json()["device"]["name"] == "New"
    assert renamed.json()["device"]["kind"] == "van"
    assert renamed.json()["device"]["group"] == "north"
    assert renamed.json()["broker"]["status"] == "unchanged"
    device = cleared.json()["device"]
    assert (device["name"], device["kind"], device["group"], device["metadata"]) == (None, "van", "north", {"b": 2})


async def test_patch_of_group_or_disabled_is_a_change_for_the_broker(http: httpx.AsyncClient) -> None:
    await http.post("/api/v1/devices", json={"id": "truck-0104", "group": "north"})

    disabled = await http.patch("/api/v1/devices/truck-0104", json={"disabled": True})
    again = await http.patch("/api/v1/devices/truck-0104", json={"disabled": True})
    moved = await http.patch("/api/v1/devices/truck-0104", json={"group": None})
    listed = await http.get("/api/v1/devices", params={"status": "disabled"})

    assert disabled.json()["device"]["disabled"] is True
    assert disabled.json()["broker"]["status"] == "pending"
    assert again.json()["broker"]["status"] == "unchanged"
    assert moved.json()["device"]["group"] is None
    assert moved.json()["broker"]["status"] == "pending"
    assert [item["id"] for item in listed.json()["items"]] == ["truck-0104"]


@pytest.mark.parametrize(
    "body", [{"disabled": "yes"}, {"kind": None}, {"group": "a/b"}, {"id": "other"}, {"metadata": [1]}]
)
async def test_patch_refuses_bad_bodies_as_problems(http: httpx.AsyncClient, body: dict[str, object]) -> None:
    await http.post("/api/v1/devices", json={"id": "truck-0105"})

    response = await http.patch("/api/v1/devices/truck-0105", json=body)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


async def test_patch_of_an_unknown_device_is_404(http: httpx.AsyncClient) -> None:
    response = await http.patch("/api/v1/devices/truck-nobody", json={"name": "x"})

    assert response.status_code == 404


async def test_delete_removes_device_account_and_cached_state_but_keeps_history(
    http: httpx.AsyncClient, database_url: str, redis_client: aioredis.Redis
) -> None:
    await http.post("/api/v1/devices", json={"id": "truck-0106"})
    await http.post("/api/v1/devices", json={"id": "truck-0107"})
    for device_id in ("truck-0106", "truck-0107"):
        await redis_client.hset(state_key(device_id), mapping={"m.fuel": encode_field(1_764_000_000_000, 0, 1, b"5")})
        await redis_client.geoadd(GEO_KEY, (13.4, 52.5, device_id))
        await redis_client.zadd(SEEN_KEY, {device_id: 1})
    await sql(
        database_url,
        "INSERT INTO telemetry (device_id, ts, received_at, seq, fuel) VALUES ('truck-0106', now(), now(), 1, 5)",
    )

    deleted = await http.delete("/api/v1/devices/truck-0106")
    again = await http.delete("/api/v1/devices/truck-0106")

    assert deleted.status_code == 200, deleted.text
    assert deleted.json()["id"] == "truck-0106"
    assert deleted.json()["broker"]["status"] == "pending"
    assert again.status_code == 404
    assert (await http.get("/api/v1/devices/truck-0106")).status_code == 404
    assert await sql(database_url, "SELECT username FROM mqtt_accounts ORDER BY username") == [("truck-0107",)]
    assert await sql(database_url, "SELECT count(*) FROM telemetry WHERE device_id = 'truck-0106'") == [(1,)]
    assert not await redis_client.exists(state_key("truck-0106"))
    assert await redis_client.exists(state_key("truck-0107"))
    assert await redis_client.geopos(GEO_KEY, "truck-0106") == [None]
    assert await redis_client.zscore(SEEN_KEY, "truck-0106") is None
    assert await redis_client.zscore(SEEN_KEY, "truck-0107") == 1


async def test_new_secret_replaces_the_old_one_and_gives_a_bridge_registered_device_its_first(
    http: httpx.AsyncClient, database_url: str
) -> None:
    created = (await http.post("/api/v1/devices", json={"id": "truck-0108"})).json()
    await sql(database_url, "INSERT INTO devices (id) VALUES ('truck-0109')")

    rotated = await http.post("/api/v1/devices/truck-0108/secret")
    first = await http.post("/api/v1/devices/truck-0109/secret")
    unknown = await http.post("/api/v1/devices/truck-nobody/secret")

    assert rotated.status_code == 200, rotated.text
    assert rotated.headers["cache-control"] == "no-store"
    new_secret = rotated.json()["secret"]
    assert new_secret != created["secret"]
    [(stored_hash,)] = await sql(database_url, "SELECT secret_hash FROM mqtt_accounts WHERE username = 'truck-0108'")
    assert isinstance(stored_hash, str)
    assert verify_secret(new_secret, stored_hash)
    assert not verify_secret(created["secret"], stored_hash)
    assert first.status_code == 200
    assert first.json()["device"]["account"] is not None
    assert unknown.status_code == 404


async def test_new_secret_for_a_revoked_device_needs_reinstate(http: httpx.AsyncClient, database_url: str) -> None:
    await http.post("/api/v1/devices", json={"id": "truck-0110"})
    await sql(
        database_url,
        "UPDATE mqtt_accounts SET secret_hash = NULL, revoked_at = now() WHERE username = 'truck-0110'",
    )

    refused = await http.post("/api/v1/devices/truck-0110/secret")
    reinstated = await http.post("/api/v1/devices/truck-0110/secret", params={"reinstate": "true"})

    assert refused.status_code == 409
    assert "reinstate" in refused.json()["detail"]
    assert reinstated.status_code == 200
    assert reinstated.json()["device"]["account"]["revoked_at"] is None


async def test_concurrent_posts_of_one_id_provision_it_once(http: httpx.AsyncClient, database_url: str) -> None:
    answers = await asyncio.gather(*(http.post("/api/v1/devices", json={"id": "truck-0111"}) for _ in range(6)))

    assert sorted(answer.status_code for answer in answers) == [201, 409, 409, 409, 409, 409]
    [winner] = [answer for answer in answers if answer.status_code == 201]
    [(stored_hash,)] = await sql(database_url, "SELECT secret_hash FROM mqtt_accounts WHERE username = 'truck-0111'")
    assert isinstance(stored_hash, str)
    assert verify_secret(winner.json()["secret"], stored_hash)
