"""Geofences over HTTP: GeoJSON in and out, refusals with the validation's reason, roles, events and time
inside (events written here as the engine would; tests/integration/engine covers the engine writing them)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from config import Settings
from tests.integration.api.conftest import mint_token

pytestmark = pytest.mark.integration

YARD = [[8.0, 48.0], [8.01, 48.0], [8.01, 48.01], [8.0, 48.01], [8.0, 48.0]]
T0 = datetime(2026, 12, 7, 8, tzinfo=UTC)


def feature(name: str, geometry: dict[str, Any], **properties: Any) -> dict[str, Any]:
    return {"type": "Feature", "geometry": geometry, "properties": {"name": name, **properties}}


def polygon(*rings: list[list[float]]) -> dict[str, Any]:
    return {"type": "Polygon", "coordinates": list(rings)}


async def test_geofences_are_added_read_replaced_and_removed_as_geojson(http: httpx.AsyncClient) -> None:
    added = await http.post("/api/v1/geofences", json=feature("yard", polygon(YARD), colour="red"))
    assert added.status_code == 201, added.text
    yard = added.json()
    assert yard["type"] == "Feature"
    assert yard["geometry"] == polygon(YARD)
    assert {k: yard["properties"][k] for k in ("name", "group", "colour", "created_by")} == {
        "name": "yard",
        "group": None,
        "colour": "red",
        "created_by": "admin",
    }
    assert yard["properties"]["created_at"].endswith("Z")
    depot = feature("depot", {"type": "Point", "coordinates": [8.5, 48.5]}, radius_m=150)
    circle = (await http.post("/api/v1/geofences", json=depot)).json()
    assert circle["properties"]["radius_m"] == 150
    listed = (await http.get("/api/v1/geofences")).json()
    assert listed["type"] == "FeatureCollection"
    assert [f["id"] for f in listed["features"]] == [yard["id"], circle["id"]]
    assert (await http.get(f"/api/v1/geofences/{yard['id']}")).json() == yard

    smaller = [[8.0, 48.0], [8.005, 48.0], [8.005, 48.005], [8.0, 48.0]]
    replaced = await http.put(f"/api/v1/geofences/{yard['id']}", json=feature("small yard", polygon(smaller)))
    assert replaced.status_code == 200, replaced.text
    assert (replaced.json()["properties"]["name"], replaced.json()["geometry"]) == ("small yard", polygon(smaller))
    assert "colour" not in replaced.json()["properties"]

    assert (await http.delete(f"/api/v1/geofences/{yard['id']}")).status_code == 204
    assert (await http.get(f"/api/v1/geofences/{yard['id']}")).status_code == 404
    assert (await http.delete(f"/api/v1/geofences/{yard['id']}")).status_code == 404
    assert (await http.put(f"/api/v1/geofences/{yard['id']}", json=feature("x", polygon(YARD)))).status_code == 404
    assert [f["id"] for f in (await http.get("/api/v1/geofences")).json()["features"]] == [circle["id"]]


REFUSED: list[tuple[Any, str]] = [
    (feature("open", polygon([*YARD[:-1], [8.0, 48.005]])), "ring 0 is not closed"),
    (
        feature("bow tie", polygon([[8.0, 48.0], [8.01, 48.01], [8.01, 48.0], [8.0, 48.01], [8.0, 48.0]])),
        "ring 0 intersects itself",
    ),
    (
        feature("huge", polygon([[8.0 + 0.001 * (i % 2), 48.0 + 0.0001 * i] for i in range(10_002)])),
        "at most 10,000 are accepted",
    ),
    (feature("minus", {"type": "Point", "coordinates": [8.0, 48.0]}, radius_m=-5), "radius_m must be positive"),
    (feature("line", {"type": "LineString", "coordinates": [[8.0, 48.0], [8.1, 48.0]]}), "is not a fence"),
    ({"type": "Feature", "geometry": polygon(YARD), "properties": {}}, "properties.name"),
    (polygon(YARD), "a geofence is a GeoJSON Feature"),
    (feature("elsewhere", polygon(YARD), group="no-such-group"), "no device group 'no-such-group'"),
]


async def test_geofences_bad_documents_are_refused_with_the_reason(http: httpx.AsyncClient) -> None:
    yard = (await http.post("/api/v1/geofences", json=feature("yard", polygon(YARD)))).json()
    for document, reason in REFUSED:
        for refused in (
            await http.post("/api/v1/geofences", json=document),
            await http.put(f"/api/v1/geofences/{yard['id']}", json=document),
        ):
            assert refused.status_code == 400, refused.text
            assert refused.headers["content-type"].startswith("application/problem+json")
            assert reason in refused.json()["detail"], (reason, refused.json()["detail"])
    assert (await http.get(f"/api/v1/geofences/{yard['id']}")).json() == yard


async def test_geofences_viewers_read_but_do_not_write(
    http: httpx.AsyncClient, api_url: str, api_settings: Settings
) -> None:
    yard = (await http.post("/api/v1/geofences", json=feature("yard", polygon(YARD)))).json()
    headers = {"Authorization": f"Bearer {mint_token(api_settings, 'watcher', 'viewer')}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=10) as viewer:
        assert (await viewer.get(f"/api/v1/geofences/{yard['id']}")).status_code == 200
        assert (await viewer.post("/api/v1/geofences", json=feature("x", polygon(YARD)))).status_code == 403
        assert (
            await viewer.put(f"/api/v1/geofences/{yard['id']}", json=feature("x", polygon(YARD)))
        ).status_code == 403
        assert (await viewer.delete(f"/api/v1/geofences/{yard['id']}")).status_code == 403


async def insert_events(database_url: str, fence_id: int, device_id: str, events: list[tuple[str, int]]) -> None:
    """Events as the engine writes them: (kind, minutes after T0)."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO devices (id) VALUES (%s) ON CONFLICT DO NOTHING", (device_id,))
        for kind, minutes in events:
            at = T0 + timedelta(minutes=minutes)
            await conn.execute(
                "INSERT INTO geofence_events (device_id, fence_id, kind, ts, crossed, confirmed_ts, confirmed_boot,"
                " confirmed_seq) VALUES (%s, %s, %s, %s, true, %s, 0, 0)",
                (device_id, fence_id, kind, at, at),
            )
        last = T0 + timedelta(minutes=100)  # how far the engine has evaluated the device's positions
        await conn.execute(
            "INSERT INTO engine_fence_state (device_id, ts, boot, seq, state) VALUES (%s, %s, 0, 0, '')",
            (device_id, last),
        )


async def test_geofences_device_events_page_and_time_inside_per_device(
    http: httpx.AsyncClient, database_url: str
) -> None:
    yard = (await http.post("/api/v1/geofences", json=feature("yard", polygon(YARD)))).json()
    # truck-a: inside 10–20 and 30–50 min; truck-b: inside since 5 min before the window, and still inside.
    await insert_events(database_url, yard["id"], "truck-a", [("enter", 10), ("exit", 20), ("enter", 30), ("exit", 50)])
    await insert_events(database_url, yard["id"], "truck-b", [("enter", -5)])

    window = {"since": T0.isoformat(), "until": (T0 + timedelta(hours=2)).isoformat()}
    first = (await http.get("/api/v1/devices/truck-a/geofence-events", params=window | {"limit": 3})).json()
    assert [(e["kind"], e["fence_name"], e["crossed"]) for e in first["items"]] == [
        ("enter", "yard", True),
        ("exit", "yard", True),
        ("enter", "yard", True),
    ]
    rest = await http.get("/api/v1/devices/truck-a/geofence-events", params=window | {"cursor": first["next_cursor"]})
    assert [(e["kind"], e["ts"]) for e in rest.json()["items"]] == [("exit", "2026-12-07T08:50:00Z")]
    assert rest.json()["next_cursor"] is None

    report = (await http.get(f"/api/v1/geofences/{yard['id']}/time-inside", params=window)).json()
    assert [(d["device_id"], d["seconds"], d["visits"], d["inside_at_end"]) for d in report["devices"]] == [
        ("truck-a", 30 * 60.0, 2, False),
        ("truck-b", 100 * 60.0, 1, True),  # up to its last evaluated position, not to `until`
    ]
    naive = await http.get(f"/api/v1/geofences/{yard['id']}/time-inside", params={"since": "2026-12-07T08:00:00"})
    assert naive.status_code == 400
    assert "time zone" in naive.json()["detail"]
    assert (await http.get("/api/v1/geofences/999999/time-inside", params=window)).status_code == 404
