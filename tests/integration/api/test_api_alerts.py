"""Rules and alerts over HTTP: validation with reasons, roles, the alert lifecycle and its filters."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from config import Settings
from tests.integration.api.conftest import mint_token

pytestmark = pytest.mark.integration

HOT = {"name": "hot engine", "metric": "engine_temp", "op": ">", "threshold": 110, "for_s": 30, "severity": "critical"}


async def insert_alert(database_url: str, rule_id: int, device_id: str, started_at: datetime, **fields: Any) -> int:
    row = {"severity": "critical", "state": "active", "message": "hot", "value": 115.0} | fields
    columns = ", ".join(row)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO devices (id, group_name) VALUES (%s, %s) ON CONFLICT DO NOTHING",
            (device_id, "north" if device_id.endswith("1") else "south"),
        )
        cur = await conn.execute(
            f"INSERT INTO alerts (rule_id, device_id, started_at, raised_at, {columns})"
            f" VALUES (%s, %s, %s, %s, {', '.join(['%s'] * len(row))}) RETURNING id",
            (rule_id, device_id, started_at, started_at + timedelta(seconds=30), *row.values()),
        )
        found = await cur.fetchone()
        assert found is not None
        return int(found[0])


async def test_rules_are_added_listed_and_removed_and_refused_with_a_reason(http: httpx.AsyncClient) -> None:
    added = await http.post("/api/v1/rules", json=HOT | {"clear_threshold": 100, "clear_for_s": 60})
    unknown = await http.post("/api/v1/rules", json=HOT | {"metric": "warp_factor"})
    too_long = await http.post("/api/v1/rules", json=HOT | {"for_s": 90_000})
    assert added.status_code == 201, added.text
    assert unknown.status_code == 400
    assert "unknown metric 'warp_factor'" in unknown.json()["detail"]
    assert too_long.status_code == 400
    assert "for_s 90000 is out of range" in too_long.json()["detail"]
    rule = added.json()
    assert (rule["metric"], rule["clear_threshold"], rule["created_by"]) == ("engine_temp", 100.0, "admin")
    assert [r["id"] for r in (await http.get("/api/v1/rules")).json()["items"]] == [rule["id"]]
    assert (await http.delete(f"/api/v1/rules/{rule['id']}")).status_code == 204
    assert (await http.get("/api/v1/rules")).json()["items"] == []
    assert (await http.delete(f"/api/v1/rules/{rule['id']}")).status_code == 404


async def test_presence_rules_take_a_duration_and_nothing_to_compare(http: httpx.AsyncClient) -> None:
    gone = await http.post("/api/v1/rules", json={"name": "gone", "op": "offline", "for_s": 600, "kind": "truck"})
    instant = await http.post("/api/v1/rules", json={"name": "gone", "op": "offline"})
    with_metric = await http.post("/api/v1/rules", json={"name": "x", "op": "offline", "for_s": 60, "metric": "fuel"})
    assert gone.status_code == 201, gone.text
    assert (gone.json()["metric"], gone.json()["op"], gone.json()["kind"]) == (None, "offline", "truck")
    assert instant.status_code == 400
    assert "for_s of at least 1 second" in instant.json()["detail"]
    assert with_metric.status_code == 400


async def test_geofence_rules_name_a_fence_that_exists(http: httpx.AsyncClient) -> None:
    depot = {"type": "Polygon", "coordinates": [[[8.0, 48.0], [8.01, 48.0], [8.01, 48.01], [8.0, 48.01], [8.0, 48.0]]]}
    fence = await http.post(
        "/api/v1/geofences", json={"type": "Feature", "properties": {"name": "Depot"}, "geometry": depot}
    )
    assert fence.status_code == 201, fence.text
    dwell = {"name": "yard dwell", "op": "inside", "for_s": 600, "kind": "truck"}
    added = await http.post("/api/v1/rules", json=dwell | {"fence_id": fence.json()["id"]})
    unknown = await http.post("/api/v1/rules", json=dwell | {"fence_id": 999_999})
    without = await http.post("/api/v1/rules", json=dwell)
    assert added.status_code == 201, added.text
    assert (added.json()["op"], added.json()["fence_id"], added.json()["metric"]) == (
        "inside",
        fence.json()["id"],
        None,
    )
    assert unknown.status_code == 400
    assert unknown.json()["detail"] == "no geofence 999999 (GET /api/v1/geofences)"
    assert without.status_code == 400
    assert "takes a fence_id" in without.json()["detail"]
    # A fence a rule names is not removed under it: the rule's alerts could never clear.
    in_use = await http.delete(f"/api/v1/geofences/{fence.json()['id']}")
    assert in_use.status_code == 409
    assert f"named by alert rules {added.json()['id']}" in in_use.json()["detail"]
    assert (await http.delete(f"/api/v1/rules/{added.json()['id']}")).status_code == 204
    assert (await http.delete(f"/api/v1/geofences/{fence.json()['id']}")).status_code == 204


async def test_viewers_read_rules_and_alerts_but_change_neither(
    http: httpx.AsyncClient, api_url: str, api_settings: Settings
) -> None:
    headers = {"Authorization": f"Bearer {mint_token(api_settings, 'watcher', 'viewer')}"}
    async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=10) as viewer:
        assert (await viewer.get("/api/v1/rules")).status_code == 200
        assert (await viewer.get("/api/v1/alerts")).status_code == 200
        assert (await viewer.post("/api/v1/rules", json=HOT)).status_code == 403
        assert (await viewer.post("/api/v1/alerts/1/acknowledge")).status_code == 403


async def test_alert_lifecycle_acknowledge_comment_clear_and_filters(
    http: httpx.AsyncClient, database_url: str
) -> None:
    rule_id = (await http.post("/api/v1/rules", json=HOT)).json()["id"]
    t0 = datetime(2026, 12, 1, 8, tzinfo=UTC)
    first = await insert_alert(database_url, rule_id, "truck-1", t0)
    second = await insert_alert(database_url, rule_id, "truck-2", t0 + timedelta(hours=1), severity="minor")

    acked = await http.post(f"/api/v1/alerts/{first}/acknowledge", json={"comment": "driver called"})
    again = await http.post(f"/api/v1/alerts/{first}/acknowledge")
    noted = await http.post(f"/api/v1/alerts/{first}/comments", json={"body": "stopping at next exit"})
    cleared = await http.post(f"/api/v1/alerts/{second}/clear")

    assert acked.status_code == 200, acked.text
    body = acked.json()
    assert (body["state"], body["acknowledged_by"], body["comments"][0]["body"]) == (
        "acknowledged",
        "admin",
        "driver called",
    )
    assert again.status_code == 409
    assert noted.status_code == 201
    assert (cleared.json()["state"], cleared.json()["clear_reason"]) == ("cleared", "operator")

    async def ids(**params: str) -> list[int]:
        response = await http.get("/api/v1/alerts", params=params)
        assert response.status_code == 200, response.text
        return [a["id"] for a in response.json()["items"]]

    assert await ids() == [second, first]
    assert await ids(state="acknowledged") == [first]
    assert await ids(severity="minor") == [second]
    assert await ids(device="truck-2") == [second]
    assert await ids(group="north") == [first]
    assert await ids(rule=str(rule_id), since=(t0 + timedelta(minutes=30)).isoformat()) == [second]
    assert await ids(until=(t0 + timedelta(minutes=30)).isoformat()) == [first]
    detail = (await http.get(f"/api/v1/alerts/{first}")).json()
    assert [c["body"] for c in detail["comments"]] == ["driver called", "stopping at next exit"]
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT alert_id, kind FROM alert_events ORDER BY id")
        assert await cur.fetchall() == [(first, "acknowledged"), (first, "commented"), (second, "cleared")]


async def test_removing_a_rule_clears_its_open_alerts(http: httpx.AsyncClient, database_url: str) -> None:
    rule_id = (await http.post("/api/v1/rules", json=HOT)).json()["id"]
    alert = await insert_alert(database_url, rule_id, "truck-1", datetime(2026, 12, 1, tzinfo=UTC))
    assert (await http.delete(f"/api/v1/rules/{rule_id}")).status_code == 204
    body = (await http.get(f"/api/v1/alerts/{alert}")).json()
    assert (body["state"], body["clear_reason"]) == ("cleared", "rule_removed")
