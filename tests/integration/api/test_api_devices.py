"""The device registry listing (PostgreSQL) and last-known state (Redis) over HTTP."""

from __future__ import annotations

import json
import random
from datetime import UTC, datetime

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis

from models.state import encode_field, state_key

pytestmark = pytest.mark.integration


async def insert_devices(database_url: str, ids: list[str]) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO devices (id, name, group_name, metadata, last_seen) VALUES (%s, %s, %s, %s, %s)",
            [(i, f"Truck {i}", "north", json.dumps({"plate": i.upper()}), datetime.now(UTC)) for i in ids],
        )


async def test_devices_list_pages_by_id_until_exhausted(http: httpx.AsyncClient, database_url: str) -> None:
    ids = [f"truck-{n:04d}" for n in range(7)]
    await insert_devices(database_url, list(reversed(ids)))

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params = {"limit": "3"} | ({"cursor": cursor} if cursor else {})
        response = await http.get("/api/v1/devices", params=params)
        assert response.status_code == 200
        body = response.json()
        seen += [item["id"] for item in body["items"]]
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert seen == ids
    assert pages == 3
    first = (await http.get("/api/v1/devices", params={"limit": "1"})).json()["items"][0]
    assert first["name"] == "Truck truck-0000"
    assert first["group"] == "north"
    assert first["metadata"] == {"plate": "TRUCK-0000"}
    assert first["kind"] == "truck"
    assert first["disabled"] is False
    assert first["last_seen"] is not None


async def test_devices_list_is_empty_without_devices(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/devices")

    assert response.json() == {"items": [], "next_cursor": None}


@pytest.mark.parametrize("params", [{"limit": "0"}, {"limit": "1001"}, {"limit": "x"}, {"cursor": "a/b"}])
async def test_devices_list_rejects_bad_params_as_problem(http: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await http.get("/api/v1/devices", params=params)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


async def test_device_state_decodes_the_redis_hash(http: httpx.AsyncClient, redis_client: aioredis.Redis) -> None:
    ts_ms = 1_764_000_000_123
    await redis_client.hset(
        state_key("truck-0001"),
        mapping={
            "pos": encode_field(ts_ms, 0, 41, b'{"lat":52.5,"lon":13.4,"speed":63.5,"heading":90.0}'),
            "m.fuel": encode_field(ts_ms - 1000, 0, 40, b"71.5"),
            "m.engine_temp": encode_field(ts_ms, 0, 41, b"88.0"),
            "quality": encode_field(ts_ms, 0, 41, b"97"),
        },
    )

    response = await http.get("/api/v1/devices/truck-0001/state")

    assert response.status_code == 200
    state = response.json()
    assert state["device_id"] == "truck-0001"
    assert state["ts"] == "2025-11-24T16:00:00.123000Z"
    assert state["position"]["lat"] == 52.5
    assert state["position"]["speed"] == 63.5
    assert state["position"]["seq"] == 41
    assert state["metrics"]["fuel"]["value"] == 71.5
    assert state["metrics"]["fuel"]["seq"] == 40
    assert state["metrics"]["engine_temp"]["value"] == 88.0
    assert state["quality"]["value"] == 97


async def test_device_state_skips_a_corrupt_field_and_serves_the_rest(
    http: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    await redis_client.hset(
        state_key("truck-0002"), mapping={"m.fuel": encode_field(1_764_000_000_000, 0, 1, b"50"), "m.level": b"garbage"}
    )

    response = await http.get("/api/v1/devices/truck-0002/state")

    assert response.status_code == 200
    assert set(response.json()["metrics"]) == {"fuel"}


async def test_device_state_of_unknown_device_is_404_problem(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/devices/truck-9999/state")

    assert response.status_code == 404
    assert response.headers["content-type"] == "application/problem+json"
    assert "truck-9999" in response.json()["detail"]


async def insert_registry(
    database_url: str, rows: list[tuple[str, str | None, str | None, str, str | None, bool]]
) -> None:
    """(id, name, group, kind, presence, disabled) rows."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO devices (id, name, group_name, kind, presence, presence_source, presence_since, disabled)"
            " VALUES (%s, %s, %s, %s, %s, CASE WHEN %s::text IS NULL THEN NULL ELSE 'status' END,"
            " CASE WHEN %s::text IS NULL THEN NULL ELSE now() END, %s)",
            [(i, n, g, k, p, p, p, d) for i, n, g, k, p, d in rows],
        )


FILTER_FLEET = [
    ("bus-01", "Line 5 bus", "north", "bus", "online", False),
    ("truck-01", "Big Red", "north", "truck", "online", False),
    ("truck-02", "Blue_50%", "north", "truck", "offline", False),
    ("truck-03", None, "south", "truck", None, False),
    ("truck-04", "Big Green", "south", "truck", "online", True),
    ("van-01", "big van", None, "van", "offline", False),
    ("van-02", "C:\\fleet", None, "van", None, False),
]


async def all_pages(http: httpx.AsyncClient, params: dict[str, str], limit: int = 2) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        response = await http.get(
            "/api/v1/devices", params=params | {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        )
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [item["id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


@pytest.mark.parametrize(
    ("params", "ids"),
    [
        ({"group": "north"}, ["bus-01", "truck-01", "truck-02"]),
        ({"kind": "truck"}, ["truck-01", "truck-02", "truck-03", "truck-04"]),
        ({"status": "online"}, ["bus-01", "truck-01"]),
        ({"status": "offline"}, ["truck-02", "van-01"]),
        ({"status": "unknown"}, ["truck-03", "van-02"]),
        ({"status": "disabled"}, ["truck-04"]),
        ({"q": "BIG"}, ["truck-01", "truck-04", "van-01"]),
        ({"q": "A"}, ["van-01", "van-02"]),
        ({"q": "truck-0"}, ["truck-01", "truck-02", "truck-03", "truck-04"]),
        ({"q": "50%"}, ["truck-02"]),
        ({"q": "%"}, ["truck-02"]),
        ({"q": "_"}, ["truck-02"]),
        ({"q": "\\"}, ["van-02"]),
        ({"q": "\\%"}, []),
        ({"q": "'; DROP TABLE devices; --"}, []),
        ({"group": "north", "kind": "truck", "status": "online"}, ["truck-01"]),
        ({"group": "south", "q": "big"}, ["truck-04"]),
    ],
)
async def test_devices_list_filters_and_pages_correctly_under_them(
    http: httpx.AsyncClient, database_url: str, params: dict[str, str], ids: list[str]
) -> None:
    await insert_registry(database_url, FILTER_FLEET)

    assert await all_pages(http, params, limit=1) == ids
    assert await all_pages(http, params, limit=1000) == ids
    assert (await http.get("/api/v1/devices", params={"limit": "1000"})).json()["next_cursor"] is None


@pytest.mark.parametrize(
    "params", [{"status": "sleeping"}, {"group": "no spaces"}, {"kind": "a/b"}, {"q": ""}, {"q": "x" * 65}]
)
async def test_devices_list_rejects_bad_filters_as_problem(http: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await http.get("/api/v1/devices", params=params)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


async def test_devices_list_matches_a_reference_filter_for_random_fleets_and_queries(
    http: httpx.AsyncClient, database_url: str
) -> None:
    rng = random.Random(4)
    names = ["Big Red", "blue_5", "50% Van", "ÄRGER", None, "Tiny", "big blue"]
    fleet = [
        (
            f"{rng.choice(['truck', 'van', 'Bus'])}-{n:03d}",
            rng.choice(names),
            rng.choice(["north", "south", None]),
            rng.choice(["truck", "van"]),
            rng.choice(["online", "offline", None]),
            rng.random() < 0.2,
        )
        for n in range(60)
    ]
    await insert_registry(database_url, fleet)

    def status_of(presence: str | None, disabled: bool) -> str:
        return "disabled" if disabled else presence or "unknown"

    for _ in range(25):
        params: dict[str, str] = {}
        if rng.random() < 0.5:
            params["group"] = rng.choice(["north", "south"])
        if rng.random() < 0.5:
            params["kind"] = rng.choice(["truck", "van"])
        if rng.random() < 0.5:
            params["status"] = rng.choice(["online", "offline", "unknown", "disabled"])
        if rng.random() < 0.5:
            params["q"] = rng.choice(["big", "BLUE", "_", "%", "ärger", "-00", "bus", "5"])
        expected = sorted(
            i
            for i, name, group, kind, presence, disabled in fleet
            if params.get("group", group) == group
            and params.get("kind", kind) == kind
            and params.get("status", status_of(presence, disabled)) == status_of(presence, disabled)
            and (
                "q" not in params
                or params["q"].lower() in i.lower()
                or (name is not None and params["q"].lower() in name.lower())
            )
        )

        assert await all_pages(http, params, limit=rng.randint(1, 7)) == expected, params


async def test_a_nul_character_in_a_parameter_is_a_bad_request_not_a_server_error(http: httpx.AsyncClient) -> None:
    response = await http.get("/api/v1/devices", params={"q": "truck\x00"})

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert "cannot be stored or compared" in response.json()["detail"]
