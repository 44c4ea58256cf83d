"""Geofences in the running engine: bridge -> feed -> engine -> geofence_events, exact through late points."""

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
from psycopg.types.json import Jsonb

from config import Settings
from engine.fence_index import FenceIndex
from engine.fence_stage import TOLERANCE_M
from engine.geofence import fence_events
from engine.track import TrackPoint
from models.fences.geojson import FenceRejected, parse_fence
from tests.integration.bridge.conftest import running_bridge
from tests.integration.engine.scenario import broker, holding, publish_fixes

pytestmark = pytest.mark.integration

StartEngine = Callable[[str], Any]
# A yard 0.01° square (about 740 m east-west at 48° N); the truck drives along its middle latitude.
YARD = [[8.0, 48.0], [8.01, 48.0], [8.01, 48.01], [8.0, 48.01], [8.0, 48.0]]
LAT = 48.005


def longitude(i: int) -> float:
    """The truck's position at second i: it approaches at 0.0005°/s (37 m/s), waits 37 m outside the gate
    from 9 s to 29 s, then drives through the yard at 0.0004°/s (30 m/s).

    It crosses lon 8.0 at 29 + 0.0005/0.0004 = 30.25 s and lon 8.01 at 29 + 0.0105/0.0004 = 55.25 s. Points
    within the 20 m band (30 s and 55 s) do not confirm a crossing; the next ones do.
    """
    if i <= 9:
        return 7.995 + 0.0005 * i
    if i <= 29:
        return 7.9995
    return 7.9995 + 0.0004 * (i - 29)


async def add_fence(database_url: str, group: str | None = None) -> int:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "INSERT INTO geofences (name, geometry, group_name) VALUES ('yard', %s, %s) RETURNING id",
            (Jsonb({"type": "Polygon", "coordinates": [YARD]}), group),
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


async def publish(mqtt_url: str, device_id: str, start: datetime, seconds: list[int]) -> None:
    """These fixes of the truck, in this order, four to a message."""
    await publish_fixes(mqtt_url, device_id, start, seconds, lat=LAT, lon=longitude)


def logged(log: Path, text: str) -> bool:
    return log.exists() and text in log.read_text()


async def wait_logged(log: Path, text: str, limit_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while not logged(log, text):
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"the engine did not log {text!r}")
        await asyncio.sleep(0.05)


async def events_once_drained(
    database_url: str, device_id: str, fence_id: int, stored: int, limit_s: float = 30
) -> list[Any]:
    """(kind, ts, crossed) of the device's events of the fence, once `stored` samples are stored and the feed is empty."""
    deadline = asyncio.get_running_loop().time() + limit_s
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while True:
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM telemetry WHERE device_id = %s), (SELECT count(*) FROM engine_feed)",
                (device_id,),
            )
            if await cur.fetchone() == (stored, 0):
                cur = await conn.execute(
                    "SELECT kind, ts, crossed FROM geofence_events WHERE device_id = %s AND fence_id = %s ORDER BY ts",
                    (device_id, fence_id),
                )
                return await cur.fetchall()
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not drained: {stored} samples expected")
            await asyncio.sleep(0.05)


def near(found: list[Any], wanted: list[tuple[str, datetime, bool]]) -> bool:
    """Same kinds and flags, times within a millisecond (the crossings are interpolated in floating point)."""
    return len(found) == len(wanted) and all(
        kind == w_kind and crossed == w_crossed and abs(ts - w_ts) < timedelta(milliseconds=1)
        for (kind, ts, crossed), (w_kind, w_ts, w_crossed) in zip(found, wanted, strict=True)
    )


async def test_engine_truck_points_shuffled_in_late_batches_give_one_enter_and_one_exit_at_the_crossings(
    bridge_settings: Settings, database_url: str, engine_process: StartEngine, tmp_path: Path
) -> None:
    device_id = f"truck-{uuid.uuid4().hex[:6]}"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    at = [start + timedelta(seconds=s) for s in (0, 22.75, 30.25, 40, 55.25)]
    shuffle = random.Random(7).sample
    engine_process("fences")
    # Added while the engine runs: it reloads the fences when they change. The group's fence is not the
    # truck's (it has no group).
    await wait_logged(tmp_path / "engine-fences-0.log", "geofences loaded: 0")
    yard = await add_fence(database_url)
    other = await add_fence(database_url, group="south")
    await wait_logged(tmp_path / "engine-fences-0.log", "geofences loaded: 2")
    async with running_bridge(bridge_settings):
        # Inside, then out: first seen inside, so an enter without a crossing at its first point (40 s).
        await publish(bridge_settings.mqtt.url, device_id, start, shuffle(range(40, 66), 26))
        found = await events_once_drained(database_url, device_id, yard, 26)
        assert near(found, [("enter", at[3], False), ("exit", at[4], True)]), found
        # Late: the approach, and a few points inside. Seen from the point at 9 s, the enter is at 22.75 s.
        await publish(bridge_settings.mqtt.url, device_id, start, shuffle([*range(10), *range(31, 40)], 19))
        found = await events_once_drained(database_url, device_id, yard, 45)
        assert near(found, [("enter", at[1], True), ("exit", at[4], True)]), found
        # Late: the wait at the gate. The truck crossed at 30.25 s.
        await publish(bridge_settings.mqtt.url, device_id, start, shuffle(range(10, 31), 21))
        found = await events_once_drained(database_url, device_id, yard, 66)
    assert near(found, [("enter", at[2], True), ("exit", at[4], True)]), found
    assert await events_once_drained(database_url, device_id, other, 66) == []


def shuttle(i: int) -> float:
    """Back and forth across the yard's west and east borders: 0.0004°/s (30 m/s) over 7.995°…8.015°."""
    span, speed = 0.02, 0.0004
    travelled = (i * speed) % (2 * span)
    return 7.995 + (travelled if travelled <= span else 2 * span - travelled)


async def test_engine_sigkilled_five_times_and_stopped_a_while_stores_each_enter_and_exit_once(
    bridge_settings: Settings, database_url: str, engine_process: Callable[[str], subprocess.Popen[bytes]]
) -> None:
    fence_id = await add_fence(database_url)
    device = f"truck-{uuid.uuid4().hex[:6]}"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    count = 400  # four round trips: eight crossings of each border
    points = [TrackPoint(ts=start + timedelta(seconds=i), lat=LAT, lon=shuttle(i), seq=i) for i in range(count)]
    fence = parse_fence(str(fence_id), {"type": "Polygon", "coordinates": [YARD]})
    assert not isinstance(fence, FenceRejected)
    wanted, _ = fence_events(device, points, FenceIndex([fence], TOLERANCE_M))
    assert len(wanted) == 16

    order = list(range(count))
    random.Random(5).shuffle(order)  # every fix late or early against its neighbours
    chunks = [order[i : i + 8] for i in range(0, count, 8)]
    host, port = broker(bridge_settings.mqtt.url)
    name = "fence-kill-0"
    engine = engine_process(name)
    async with (
        running_bridge(bridge_settings),
        aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client,
    ):
        kill_at = {len(chunks) * n // 6 for n in range(1, 6)}
        for n, chunk in enumerate(chunks):
            samples = [
                {"seq": i, "ts": points[i].ts.isoformat(), "pos": {"lat": LAT, "lon": points[i].lon}} for i in chunk
            ]
            await client.publish(f"fleet/v1/{device}/telemetry", msgspec.json.encode({"samples": samples}), qos=1)
            await asyncio.sleep(0.02)
            if n in kill_at:
                await holding(database_url, name)  # evaluating: the SIGKILL lands in a cycle or between two
                engine.kill()
                engine.wait(timeout=10)
                if n == max(kill_at):
                    await asyncio.sleep(2.0)  # stopped a while: the feed piles up meanwhile
                name = f"fence-kill-{n}"
                engine = engine_process(name)
        found = await events_once_drained(database_url, device, fence_id, count, limit_s=60)
    assert near(found, [(e.kind, e.at, e.crossed) for e in wanted])
