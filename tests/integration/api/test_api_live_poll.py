"""The polling fallback `GET /api/v1/live`: the same updates as the WebSocket, a cursor to continue from."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis

from api.server import running
from config import Settings
from models.state import GEO_KEY, LIVE_STREAM_KEY
from tests.integration.api.live_client import publish_fuel, publish_position

pytestmark = pytest.mark.integration


@pytest.fixture
async def registry(database_url: str) -> None:
    """Two devices in two groups, registered before the API instance starts (its group cache is fresh)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO devices (id, group_name) VALUES ('truck-n1', 'north'), ('truck-s1', 'south')")


@pytest.fixture
async def poller(api_settings: Settings, admin_token: str, registry: None) -> AsyncIterator[httpx.AsyncClient]:
    """An admin's client of an API instance started after the registry was filled."""
    async with running(api_settings) as url, httpx.AsyncClient(base_url=url, timeout=30) as client:
        client.headers["Authorization"] = f"Bearer {admin_token}"
        yield client


async def test_poll_returns_updates_after_the_cursor_and_where_to_continue(
    poller: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    since = await publish_fuel(redis_client, "truck-1", 1, 1.0)
    entries = [await publish_fuel(redis_client, "truck-1", seq, float(seq)) for seq in (2, 3, 4)]

    first = (await poller.get("/api/v1/live", params={"since": since, "limit": 2})).json()
    rest = (await poller.get("/api/v1/live", params={"since": first["next_cursor"]})).json()
    empty = (await poller.get("/api/v1/live", params={"since": rest["next_cursor"]})).json()

    assert [update["cursor"] for update in first["updates"]] == entries[:2]
    assert first["next_cursor"] == entries[1]
    assert first["reset"] is False
    assert [update["cursor"] for update in rest["updates"]] == entries[2:]
    assert rest["updates"][0] == {
        "type": "state",
        "device_id": "truck-1",
        "changes": {
            "device_id": "truck-1",
            "ts": "2025-11-24T16:00:00.004000Z",
            "position": None,
            "metrics": {"fuel": {"value": 4.0, "ts": "2025-11-24T16:00:00.004000Z", "seq": 4, "boot": 0}},
            "aggregates": {},
            "quality": None,
            "presence": None,
        },
        "cursor": entries[2],
    }
    assert empty == {"updates": [], "next_cursor": entries[2], "reset": False}


async def test_poll_filters_by_devices_group_and_box(poller: httpx.AsyncClient, redis_client: aioredis.Redis) -> None:
    await redis_client.geoadd(GEO_KEY, (13.4, 52.5, "truck-s1"))
    since = await publish_fuel(redis_client, "truck-x", 1, 0.0)
    north = await publish_fuel(redis_client, "truck-n1", 1, 1.0)
    south = await publish_fuel(redis_client, "truck-s1", 1, 2.0)
    moved = await publish_position(redis_client, "truck-n1", 2, 13.5, 52.5)

    async def cursors(**selector: str) -> list[str]:
        page = (await poller.get("/api/v1/live", params={"since": since, **selector})).json()
        return [update["cursor"] for update in page["updates"]]

    assert await cursors(devices="truck-s1,truck-n1") == [north, south, moved]
    assert await cursors(devices="truck-s1") == [south]
    assert await cursors(group="north") == [north, moved]
    # In the box: truck-s1 by its current position, truck-n1's move by the position it carries.
    assert await cursors(bbox="13,52,14,53") == [south, moved]
    assert len(await cursors()) == 3


async def test_poll_says_reset_when_the_cursor_is_older_than_the_stream_keeps(
    poller: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    old = await publish_fuel(redis_client, "truck-1", 1, 1.0)
    await publish_fuel(redis_client, "truck-1", 2, 2.0)
    await redis_client.xtrim(LIVE_STREAM_KEY, maxlen=0)
    newest = await publish_fuel(redis_client, "truck-1", 3, 3.0)

    page = (await poller.get("/api/v1/live", params={"since": old})).json()

    assert page == {"updates": [], "next_cursor": newest, "reset": True}


async def test_poll_waits_for_the_first_matching_update(
    poller: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    since = await publish_fuel(redis_client, "truck-1", 1, 1.0)
    waiting = asyncio.create_task(poller.get("/api/v1/live", params={"since": since, "devices": "truck-1", "wait": 20}))
    await asyncio.sleep(0.2)
    await publish_fuel(redis_client, "truck-2", 1, 9.0)  # wakes the poll, but does not match
    entry = await publish_fuel(redis_client, "truck-1", 2, 2.0)

    page = (await waiting).json()

    assert [update["cursor"] for update in page["updates"]] == [entry]


@pytest.mark.parametrize(
    ("params", "detail"),
    [
        ({"since": "yesterday"}, "since is not a stream entry id"),
        ({"devices": "truck/1"}, "devices: 'truck/1' is not a device id"),
        ({"devices": "a", "group": "north"}, "name at most one of devices, group or bbox"),
        ({"bbox": "1,2,3"}, "bbox takes four numbers"),
        ({"bbox": "1,2,x,4"}, "bbox takes four numbers"),
        ({"bbox": "14,52,13,53"}, "bbox minimum above its maximum"),
    ],
)
async def test_poll_refuses_bad_parameters_with_a_problem(
    http: httpx.AsyncClient, params: dict[str, str], detail: str
) -> None:
    response = await http.get("/api/v1/live", params=params)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"].startswith(detail)


async def test_poll_limits_wait_and_limit(http: httpx.AsyncClient) -> None:
    assert (await http.get("/api/v1/live", params={"wait": 26})).status_code == 400
    assert (await http.get("/api/v1/live", params={"limit": 0})).status_code == 400
