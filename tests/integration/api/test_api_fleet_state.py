"""`GET /api/v1/state`: the state of many devices from Redis, chosen through the registry and the GEO index."""

from __future__ import annotations

import random

import httpx
import pytest
import redis.asyncio as aioredis

from api.fleet.bbox import BoundingBox
from api.fleet.services import devices_in_box
from models.state import GEO_KEY, encode_field, state_key
from tests.integration.api.test_api_devices import insert_registry

pytestmark = pytest.mark.integration

TS_MS = 1_764_000_000_000

# id, group, kind, (lon, lat) or None (state without a position), or no state at all ("none").
FLEET: list[tuple[str, str | None, str, tuple[float, float] | str | None]] = [
    ("bus-01", "north", "bus", (13.40, 52.52)),  # Berlin
    ("truck-01", "north", "truck", (13.50, 52.40)),  # Berlin
    ("truck-02", "north", "truck", "none"),
    ("truck-03", "south", "truck", (11.58, 48.14)),  # Munich
    ("truck-04", "south", "truck", None),
    ("van-01", None, "van", (9.99, 53.55)),  # Hamburg
]


async def arrange(database_url: str, redis_client: aioredis.Redis) -> None:
    await insert_registry(database_url, [(i, None, g, k, None, False) for i, g, k, _ in FLEET])
    for device_id, _, _, where in FLEET:
        if where == "none":
            continue
        fields = {"m.fuel": encode_field(TS_MS, 0, 1, b"50.0")}
        if isinstance(where, tuple):
            lon, lat = where
            fields["pos"] = encode_field(TS_MS, 0, 1, b'{"lat":%f,"lon":%f}' % (lat, lon))
            await redis_client.geoadd(GEO_KEY, (lon, lat, device_id))
        await redis_client.hset(state_key(device_id), mapping=fields)


async def all_pages(http: httpx.AsyncClient, params: dict[str, str], limit: int) -> list[str]:
    seen: list[str] = []
    cursor: str | None = None
    while True:
        response = await http.get(
            "/api/v1/state", params=params | {"limit": str(limit)} | ({"cursor": cursor} if cursor else {})
        )
        assert response.status_code == 200, response.text
        body = response.json()
        seen += [item["device_id"] for item in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            return seen


@pytest.mark.parametrize(
    ("params", "ids"),
    [
        ({}, ["bus-01", "truck-01", "truck-03", "truck-04", "van-01"]),
        ({"group": "north"}, ["bus-01", "truck-01"]),
        ({"kind": "truck"}, ["truck-01", "truck-03", "truck-04"]),
        ({"ids": "truck-04,van-01,truck-02,nobody"}, ["truck-04", "van-01"]),
        ({"bbox": "13.0,52.0,14.0,53.0"}, ["bus-01", "truck-01"]),
        ({"bbox": "5.0,47.0,15.0,55.0"}, ["bus-01", "truck-01", "truck-03", "van-01"]),
        ({"bbox": "5.0,47.0,15.0,55.0", "group": "south"}, ["truck-03"]),
        ({"bbox": "5.0,47.0,15.0,55.0", "kind": "truck", "ids": "truck-01,truck-04"}, ["truck-01"]),
        ({"bbox": "-10.0,-10.0,0.0,0.0"}, []),
    ],
)
async def test_fleet_state_filters_and_pages_in_id_order(
    http: httpx.AsyncClient,
    database_url: str,
    redis_client: aioredis.Redis,
    params: dict[str, str],
    ids: list[str],
) -> None:
    await arrange(database_url, redis_client)

    assert await all_pages(http, params, limit=1) == ids
    assert await all_pages(http, params, limit=5000) == ids


async def test_fleet_state_serves_whole_states(
    http: httpx.AsyncClient, database_url: str, redis_client: aioredis.Redis
) -> None:
    await arrange(database_url, redis_client)

    body = (await http.get("/api/v1/state", params={"ids": "bus-01"})).json()

    assert body["next_cursor"] is None
    [state] = body["items"]
    assert state["position"]["lon"] == pytest.approx(13.40)
    assert state["metrics"]["fuel"]["value"] == 50.0


@pytest.mark.parametrize(
    "params",
    [
        {"bbox": "1,2,3"},
        {"bbox": "10,0,-10,1"},
        {"bbox": "0,0,200,1"},
        {"ids": ""},
        {"ids": "a/b"},
        {"ids": ",".join(f"d{n}" for n in range(1001))},
        {"limit": "5001"},
        {"group": "a b"},
        {"cursor": "a/b"},
    ],
)
async def test_fleet_state_refuses_bad_params_as_problem(http: httpx.AsyncClient, params: dict[str, str]) -> None:
    response = await http.get("/api/v1/state", params=params)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


async def test_box_search_finds_exactly_the_positions_inside_at_any_latitude(redis_client: aioredis.Redis) -> None:
    # Random boxes from the equator to the Arctic, random positions in and around each: the covering
    # GEOSEARCH plus exact filtering must agree with plain comparison on the stored coordinates.
    rng = random.Random(20261125)
    for round_ in range(40):
        await redis_client.delete(GEO_KEY)
        min_lon, min_lat = rng.uniform(-170, 160), rng.uniform(-80, 80)
        box = BoundingBox(
            min_lon, min_lat, min_lon + rng.uniform(0.001, 20), min(85.0, min_lat + rng.uniform(0.001, 10))
        )
        points = {
            f"p{round_}-{n}": (
                rng.uniform(box.min_lon - 1, box.max_lon + 1),
                rng.uniform(max(-85.0, box.min_lat - 1), min(85.0, box.max_lat + 1)),
            )
            for n in range(200)
        }
        await redis_client.geoadd(GEO_KEY, [v for name, (lon, lat) in points.items() for v in (lon, lat, name)])
        stored = await redis_client.geopos(GEO_KEY, *points)
        expected = {name for name, pos in zip(points, stored, strict=True) if pos and box.contains(pos[0], pos[1])}

        assert set(await devices_in_box(redis_client, box)) == expected, box
