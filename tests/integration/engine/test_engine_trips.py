"""The engine's trips, stops and idling on the real servers: a route whose answer was worked out by hand
(tests/unit/engine/route_depot_day.json, moved to a recent day) published through the bridge in order,
and shuffled with late chunks, is stored the same, and as the pure evaluation gives it."""

from __future__ import annotations

import asyncio
import random
import subprocess
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import aiomqtt
import msgspec
import psycopg
import pytest

from config import Settings
from engine.track import TrackPoint, device_order
from engine.trips import trips_and_stops
from tests.integration.bridge.conftest import running_bridge
from tests.integration.engine.scenario import broker, holding

pytestmark = pytest.mark.integration

StartEngine = Callable[[str], subprocess.Popen[bytes]]

ROUTE = msgspec.json.decode(
    (Path(__file__).parents[2] / "unit/engine/route_depot_day.json").read_bytes(), type=list[TrackPoint]
)
# The bridge refuses samples older than its retention: the route is replayed two days ago.
SHIFT = datetime.combine(datetime.now(UTC).date() - timedelta(days=2), datetime.min.time(), UTC) - datetime(
    2026, 3, 2, tzinfo=UTC
)
# A fix from the truck's offline buffer, sent after everything else: at 08:00 it was 1.1 km north, driving.
LATE = TrackPoint(ts=datetime(2026, 3, 2, 8, tzinfo=UTC), seq=99, lat=50.06, lon=10.0, speed_kmh=45, ignition=True)


def _moved(point: TrackPoint) -> TrackPoint:
    return msgspec.structs.replace(point, ts=point.ts + SHIFT)


def _sample(point: TrackPoint) -> dict[str, Any]:
    metrics = {"ignition": float(point.ignition)} if point.ignition is not None else {}
    metrics |= {"fuel": point.fuel_pct} if point.fuel_pct is not None else {}
    metrics |= {"odometer": point.odometer_km} if point.odometer_km is not None else {}
    pos = {"lat": point.lat, "lon": point.lon, "speed": point.speed_kmh}
    return {"seq": point.seq, "ts": point.ts.isoformat(), "pos": pos, "metrics": metrics}


async def _deliver(
    mqtt_url: str, database_url: str, device: str, chunks: list[list[TrackPoint]], *, stored: int = 0
) -> None:
    """Each chunk in one message, the next only once the engine has taken the feed of the one before."""
    host, port = broker(mqtt_url)
    async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        for chunk in chunks:
            body = msgspec.json.encode({"samples": [_sample(p) for p in chunk]})
            await client.publish(f"fleet/v1/{device}/telemetry", body, qos=1)
            stored += len(chunk)
            await _wait_evaluated(database_url, device, stored)


async def _wait_evaluated(database_url: str, device: str, samples: int, limit_s: float = 30) -> None:
    """Until the device's samples are stored and the engine has consumed the feed that named them."""
    deadline = asyncio.get_running_loop().time() + limit_s
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while True:
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM telemetry WHERE device_id = %s), (SELECT count(*) FROM engine_feed)",
                (device,),
            )
            row = await cur.fetchone()
            if row == (samples, 0):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not evaluated: stored samples, feed rows = {row}")
            await asyncio.sleep(0.05)


async def _stored(database_url: str, device: str) -> dict[str, list[tuple[Any, ...]]]:
    """The device's stored trips, stops and idle periods, without the device and the write time."""
    found = {}
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for table, columns in (
            (
                "trips",
                "started_at, ended_at, start_lat, end_lat, distance_m, from_odometer, duration_s,"
                " max_speed_kmh, avg_speed_kmh, fuel_used_pct, complete",
            ),
            ("stops", "started_at, ended_at, lat, lon, duration_s, complete"),
            ("idle_periods", "started_at, ended_at, lat, lon, duration_s"),
        ):
            cur = await conn.execute(
                f"SELECT {columns} FROM {table} WHERE device_id = %s ORDER BY started_at", (device,)
            )
            found[table] = await cur.fetchall()
    return found


def _expected(points: list[TrackPoint]) -> dict[str, list[tuple[Any, ...]]]:
    report = trips_and_stops("x", device_order(points))
    return {
        "trips": [
            (
                *(t.start_at, t.end_at, t.start.lat, t.end.lat, t.distance_m, t.from_odometer, t.duration_s),
                *(t.max_speed_kmh, t.avg_speed_kmh, t.fuel_used_pct, t.complete),
            )
            for t in report.trips
        ],
        "stops": [(s.start_at, s.end_at, s.place.lat, s.place.lon, s.duration_s, s.complete) for s in report.stops],
        "idle_periods": [(i.start_at, i.end_at, i.place.lat, i.place.lon, i.duration_s) for i in report.idles],
    }


async def _last_write(database_url: str, device: str) -> tuple[Any, ...]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT (SELECT max(updated_at) FROM trips WHERE device_id = %(d)s),"
            " (SELECT max(updated_at) FROM stops WHERE device_id = %(d)s),"
            " (SELECT max(updated_at) FROM idle_periods WHERE device_id = %(d)s)",
            {"d": device},
        )
        row = await cur.fetchone()
        assert row is not None
        return tuple(row)


async def test_engine_trips_of_a_route_in_order_and_shuffled_with_late_points_are_stored_the_same(
    bridge_settings: Settings, database_url: str, engine_process: StartEngine
) -> None:
    tag = uuid.uuid4().hex[:6]
    ordered, shuffled = f"truck-{tag}-ordered", f"truck-{tag}-shuffled"
    route = [_moved(p) for p in ROUTE]
    mixed = route.copy()
    random.Random(7).shuffle(mixed)
    engine_process("trips")
    async with running_bridge(bridge_settings):
        url = bridge_settings.mqtt.url
        await _deliver(url, database_url, ordered, [route[i : i + 10] for i in range(0, len(route), 10)])
        await _deliver(url, database_url, shuffled, [mixed[i : i + 4] for i in range(0, len(mixed), 4)])
        by_hand = await _stored(database_url, ordered)
        assert by_hand == await _stored(database_url, shuffled) == _expected(route)
        assert [row[:2] for row in by_hand["trips"]] == [
            (datetime(2026, 3, 2, 7, 33, tzinfo=UTC) + SHIFT, datetime(2026, 3, 2, 7, 44, tzinfo=UTC) + SHIFT),
            (datetime(2026, 3, 2, 9, tzinfo=UTC) + SHIFT, datetime(2026, 3, 2, 9, 15, tzinfo=UTC) + SHIFT),
        ]
        assert len(by_hand["stops"]) == len(by_hand["idle_periods"]) == 3

        # The whole route evaluated again (as a feed row naming it from its first point makes the engine
        # do): the same items, nothing written.
        written = await _last_write(database_url, ordered)
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO engine_feed (part, devices, ts_from)"
                " VALUES ((hashtextextended(%s, 0) & 15)::smallint, ARRAY[%s], ARRAY[%s::timestamptz])",
                (ordered, ordered, route[0].ts),
            )
        await _wait_evaluated(database_url, ordered, len(route))
        assert await _last_write(database_url, ordered) == written

        # The late fix splits the stop at the second depot into stop, trip, stop, for both trucks.
        late = _moved(LATE)
        await _deliver(url, database_url, ordered, [[late]], stored=len(route))
        await _deliver(url, database_url, shuffled, [[late]], stored=len(route))
    split = await _stored(database_url, ordered)
    assert split == await _stored(database_url, shuffled) == _expected([*route, late])
    assert [row[0].time().isoformat() for row in split["trips"]] == ["07:33:00", "08:00:00", "09:00:00"]
    assert len(split["stops"]) == 4


async def test_engine_sigkilled_five_times_and_stopped_for_a_while_stores_the_same_trips_stops_and_idling(
    bridge_settings: Settings, database_url: str, engine_process: StartEngine
) -> None:
    device = f"truck-{uuid.uuid4().hex[:6]}-killed"
    route = [_moved(p) for p in ROUTE]
    mixed = route.copy()
    random.Random(11).shuffle(mixed)  # late and out of order too
    host, port = broker(bridge_settings.mqtt.url)
    name = "trips-kill-0"
    engine = engine_process(name)
    async with (
        running_bridge(bridge_settings),
        aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client,
    ):
        chunks = [mixed[i : i + 3] for i in range(0, len(mixed), 3)]
        kill_at = {len(chunks) * n // 6 for n in range(1, 6)}
        for n, chunk in enumerate(chunks):
            body = msgspec.json.encode({"samples": [_sample(p) for p in chunk]})
            await client.publish(f"fleet/v1/{device}/telemetry", body, qos=1)
            await asyncio.sleep(0.02)
            if n in kill_at:
                await holding(database_url, name)  # evaluating: the SIGKILL lands in a cycle or between two
                engine.kill()
                engine.wait(timeout=10)
                if n == max(kill_at):
                    await asyncio.sleep(2.0)  # stopped a while: the feed piles up meanwhile
                name = f"trips-kill-{n}"
                engine = engine_process(name)
        await _wait_evaluated(database_url, device, len(route), limit_s=60)
    assert await _stored(database_url, device) == _expected(route)
