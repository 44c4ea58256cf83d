"""Trips, stops, idling and daily summaries over REST, read from the rows the engine stores (written
here directly: tests/integration/engine/test_engine_trips.py covers the engine writing them)."""

from __future__ import annotations

import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import psycopg
import pytest

from engine.track import TrackPoint
from engine.trips import TripReport, trips_and_stops
from models.trip_summary import daily_summary

pytestmark = pytest.mark.integration

ROUTE = msgspec.json.decode(
    (Path(__file__).parents[2] / "unit/engine/route_depot_day.json").read_bytes(), type=list[TrackPoint]
)
DAY = date(2026, 3, 2)


async def _store(database_url: str, report: TripReport) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn, conn.cursor() as cur:
        await cur.executemany(
            "INSERT INTO trips (device_id, started_at, ended_at, start_lat, start_lon, end_lat, end_lon, distance_m,"
            " from_odometer, duration_s, max_speed_kmh, avg_speed_kmh, fuel_used_pct, complete)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            [
                (
                    *(t.device_id, t.start_at, t.end_at, t.start.lat, t.start.lon, t.end.lat, t.end.lon),
                    *(t.distance_m, t.from_odometer, t.duration_s, t.max_speed_kmh, t.avg_speed_kmh),
                    *(t.fuel_used_pct, t.complete),
                )
                for t in report.trips
            ],
        )
        await cur.executemany(
            "INSERT INTO stops (device_id, started_at, ended_at, lat, lon, duration_s, complete)"
            " VALUES (%s, %s, %s, %s, %s, %s, %s)",
            [
                (s.device_id, s.start_at, s.end_at, s.place.lat, s.place.lon, s.duration_s, s.complete)
                for s in report.stops
            ],
        )
        await cur.executemany(
            "INSERT INTO idle_periods (device_id, started_at, ended_at, lat, lon, duration_s)"
            " VALUES (%s, %s, %s, %s, %s, %s)",
            [(i.device_id, i.start_at, i.end_at, i.place.lat, i.place.lon, i.duration_s) for i in report.idles],
        )


async def _register(database_url: str, devices: dict[str, str]) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for device, group in devices.items():
            await conn.execute("INSERT INTO devices (id, group_name) VALUES (%s, %s)", (device, group))


def _json(value: Any) -> Any:
    return msgspec.json.decode(msgspec.json.encode(value))


async def _all_pages(http: httpx.AsyncClient, path: str, **params: Any) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = []
    cursor = None
    while True:
        body = (await http.get(path, params=params | ({"cursor": cursor} if cursor else {}))).json()
        items += body["items"]
        cursor = body["next_cursor"]
        if cursor is None:
            return items


async def test_api_trips_stops_and_idling_are_listed_by_start_with_a_window_and_pages(
    http: httpx.AsyncClient, database_url: str
) -> None:
    device = f"truck-{uuid.uuid4().hex[:6]}"
    await _register(database_url, {device: "north"})
    report = trips_and_stops(device, ROUTE)
    await _store(database_url, report)
    base = f"/api/v1/devices/{device}"

    assert (await http.get(f"{base}/trips")).json() == {"items": _json(report.trips), "next_cursor": None}
    assert await _all_pages(http, f"{base}/trips", limit=1) == _json(report.trips)
    assert await _all_pages(http, f"{base}/stops", limit=2) == _json(report.stops)
    assert await _all_pages(http, f"{base}/idling", limit=1) == _json(report.idles)
    second = await http.get(f"{base}/trips", params={"since": "2026-03-02T08:00:00Z", "until": "2026-03-02T10:00:00Z"})
    assert [t["start_at"] for t in second.json()["items"]] == ["2026-03-02T09:00:00Z"]
    naive = await http.get(f"{base}/stops", params={"since": "2026-03-02T08:00:00"})
    assert naive.status_code == 400
    assert "time zone" in naive.json()["detail"]
    assert (await http.get("/api/v1/devices/no-such-truck/trips")).status_code == 404


async def test_api_daily_summaries_per_device_and_group_and_a_group_limited_key_sees_its_group_only(
    http: httpx.AsyncClient, anonymous: httpx.AsyncClient, database_url: str
) -> None:
    tag = uuid.uuid4().hex[:6]
    one, two, other = f"truck-{tag}-1", f"truck-{tag}-2", f"truck-{tag}-3"
    await _register(database_url, {one: f"east-{tag}", two: f"east-{tag}", other: f"west-{tag}"})
    await _store(database_url, trips_and_stops(one, ROUTE))
    await _store(database_url, trips_and_stops(two, ROUTE[:20]))  # the first trip only

    summary = (await http.get(f"/api/v1/devices/{one}/summary", params={"day": "2026-03-02"})).json()
    assert summary == _json(daily_summary(one, trips_and_stops(one, ROUTE), DAY))
    assert (summary["trips"], summary["driving_s"], summary["idle_s"], summary["max_speed_kmh"]) == (2, 1560, 420, 70)
    group = (await http.get(f"/api/v1/groups/east-{tag}/summary", params={"day": "2026-03-02"})).json()
    assert (group["devices"], group["trips"], group["device_id"]) == (2, 3, None)
    assert group["fuel_used_pct"] == pytest.approx(3.0)
    next_day = (await http.get(f"/api/v1/devices/{one}/summary", params={"day": "2026-03-03"})).json()
    assert (next_day["trips"], next_day["distance_m"]) == (0, 0)
    # A night drive from 23:50 to 00:10, then parked for two days: the day after has its share of both.
    night = [
        TrackPoint(
            ts=datetime(2026, 3, 2, 23, 50, tzinfo=UTC) + timedelta(minutes=m),
            lat=50 + m * 0.005,
            lon=10.0,
            speed_kmh=40 if m < 20 else 0,
        )
        for m in range(21)
    ] + [TrackPoint(ts=datetime(2026, 3, 5, tzinfo=UTC), lat=50.1, lon=10.0, speed_kmh=0)]
    await _store(database_url, trips_and_stops(two, night))
    after = (await http.get(f"/api/v1/devices/{two}/summary", params={"day": "2026-03-03"})).json()
    assert after == _json(daily_summary(two, trips_and_stops(two, night), date(2026, 3, 3)))
    assert (after["trips"], after["driving_s"], after["stopped_s"]) == (0, 600, 86400 - 600)
    parked = (await http.get(f"/api/v1/devices/{two}/summary", params={"day": "2026-03-04"})).json()
    assert (parked["trips"], parked["driving_s"], parked["stopped_s"]) == (0, 0, 86400)
    bad_day = await http.get(f"/api/v1/devices/{one}/summary", params={"day": "2026-13-01"})
    assert bad_day.status_code == 400
    assert (await http.get("/api/v1/groups/nobody-here/summary", params={"day": "2026-03-02"})).status_code == 404

    created = await http.post("/api/v1/api-keys", json={"name": f"west-{tag}", "group": f"west-{tag}"})
    west = {"X-API-Key": created.json()["key"]}
    assert (await anonymous.get(f"/api/v1/devices/{one}/trips", headers=west)).status_code == 404
    assert (await anonymous.get(f"/api/v1/devices/{other}/trips", headers=west)).json()["items"] == []
    east_summary = await anonymous.get(f"/api/v1/groups/east-{tag}/summary", params={"day": "2026-03-02"}, headers=west)
    assert east_summary.status_code == 404
    west_summary = await anonymous.get(f"/api/v1/groups/west-{tag}/summary", params={"day": "2026-03-02"}, headers=west)
    assert (west_summary.json()["devices"], west_summary.json()["trips"]) == (1, 0)
