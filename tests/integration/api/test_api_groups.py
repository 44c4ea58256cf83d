"""Device groups over HTTP: described groups and groups named by devices, with their counts."""

from __future__ import annotations

import httpx
import psycopg
import pytest

from tests.integration.api.test_api_devices import insert_registry

pytestmark = pytest.mark.integration

FLEET = [
    ("bus-01", None, "north", "bus", "online", False),
    ("truck-01", None, "north", "truck", "online", False),
    ("truck-02", None, "north", "truck", "offline", False),
    ("truck-03", None, "north", "truck", "online", True),  # disabled: not counted online
    ("truck-04", None, "south", "truck", None, False),
    ("van-01", None, None, "van", "online", False),
]


async def test_groups_list_described_and_named_groups_with_counts(http: httpx.AsyncClient, database_url: str) -> None:
    await insert_registry(database_url, FLEET)
    described = await http.put("/api/v1/groups/east", json={"description": "Eastern depot"})
    redescribed = await http.put("/api/v1/groups/north", json={"description": "Northern depot"})

    listing = await http.get("/api/v1/groups")

    assert described.status_code == 201, described.text
    assert redescribed.status_code == 201
    assert listing.status_code == 200
    rows = {g["name"]: (g["description"], g["devices"], g["online"]) for g in listing.json()["items"]}
    assert rows == {"east": ("Eastern depot", 0, 0), "north": ("Northern depot", 4, 2), "south": (None, 1, 0)}
    assert [g["name"] for g in listing.json()["items"]] == ["east", "north", "south"]
    south = next(g for g in listing.json()["items"] if g["name"] == "south")
    assert south["created_at"] is None


async def test_groups_list_pages_by_name(http: httpx.AsyncClient, database_url: str) -> None:
    await insert_registry(database_url, FLEET)
    for name in ("a1", "z9"):
        await http.put(f"/api/v1/groups/{name}", json={})

    names: list[str] = []
    cursor: str | None = None
    while True:
        body = (await http.get("/api/v1/groups", params={"limit": "1"} | ({"cursor": cursor} if cursor else {}))).json()
        names += [g["name"] for g in body["items"]]
        cursor = body["next_cursor"]
        if cursor is None:
            break

    assert names == ["a1", "north", "south", "z9"]


async def test_put_replaces_the_description_and_answers_200(http: httpx.AsyncClient) -> None:
    first = await http.put("/api/v1/groups/west", json={"description": "one"})
    second = await http.put("/api/v1/groups/west", json={"description": "two"})
    cleared = await http.put("/api/v1/groups/west", json={})
    details = await http.get("/api/v1/groups/west")

    assert (first.status_code, second.status_code, cleared.status_code) == (201, 200, 200)
    assert second.json()["description"] == "two"
    assert details.json()["description"] is None
    assert details.json()["created_at"] == first.json()["created_at"]
    assert details.json()["updated_at"] >= first.json()["updated_at"]


async def test_group_details_of_a_named_group_and_404_for_unknown(http: httpx.AsyncClient, database_url: str) -> None:
    await insert_registry(database_url, FLEET)

    north = await http.get("/api/v1/groups/north")
    unknown = await http.get("/api/v1/groups/nowhere")

    assert north.status_code == 200
    assert (north.json()["devices"], north.json()["online"]) == (4, 2)
    assert unknown.status_code == 404
    assert unknown.headers["content-type"] == "application/problem+json"


@pytest.mark.parametrize(
    ("path", "body"),
    [
        ("/api/v1/groups/has%20space", {}),
        ("/api/v1/groups/-leading", {}),
        ("/api/v1/groups/" + "x" * 129, {}),
        ("/api/v1/groups/ok", {"description": "x" * 1001}),
        ("/api/v1/groups/ok", {"other": 1}),
    ],
)
async def test_put_refuses_bad_names_and_bodies(http: httpx.AsyncClient, path: str, body: dict[str, object]) -> None:
    response = await http.put(path, json=body)

    assert response.status_code == 400
    assert response.headers["content-type"] == "application/problem+json"


async def test_delete_refuses_a_group_with_devices_then_deletes_it_once_empty(
    http: httpx.AsyncClient, database_url: str
) -> None:
    await insert_registry(database_url, [("truck-01", None, "north", "truck", None, False)])
    await http.put("/api/v1/groups/north", json={"description": "Northern depot"})

    refused = await http.delete("/api/v1/groups/north")
    await http.patch("/api/v1/devices/truck-01", json={"group": None})
    deleted = await http.delete("/api/v1/groups/north")
    again = await http.delete("/api/v1/groups/north")

    assert refused.status_code == 409
    assert "1 devices" in refused.json()["detail"]
    assert deleted.status_code == 204
    assert again.status_code == 404
    assert (await http.get("/api/v1/groups/north")).status_code == 404
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute("SELECT count(*) FROM device_groups")
        assert await cursor.fetchone() == (0,)
