"""Geofence rules in the running engine: bridge -> feed -> engine -> alerts, the same under late points."""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest
from psycopg.types.json import Jsonb

from config import Settings
from tests.integration.bridge.conftest import running_bridge
from tests.integration.engine.scenario import publish_fixes

pytestmark = pytest.mark.integration

StartEngine = Callable[[str], Any]
DEPOT = [[8.0, 48.0], [8.01, 48.0], [8.01, 48.01], [8.0, 48.01], [8.0, 48.0]]  # about 740 m east-west at 48° N
LAT = 48.005
SECONDS = list(range(0, 172, 2))  # a fix every 2 s


def longitude(i: int) -> float:
    """The truck's position at second i: it drives in at 0.0002°/s (15 m/s), parks 300 m inside from 30 s to
    130 s, and drives out the way it came.

    Its last fix outside is at 8 s (22 m out: beyond the 20 m band) and its first inside at 10 s, 0.0001°
    in: it crosses lon 8.0 at 8 + 2 × 0.0003/0.0004 = 9.5 s. On the way out it is 0.0001° inside at 150 s
    and 0.0003° outside at 152 s: it crosses at 150.5 s. A stay of 141 s.
    """
    if i <= 30:
        return 7.9981 + 0.0002 * i
    if i <= 130:
        return 8.0041
    return 8.0041 - 0.0002 * (i - 130)


async def add_depot_and_rules(database_url: str, created_at: datetime) -> tuple[int, int]:
    """The fence 'Depot', a dwell rule (inside for more than 2 min) and a leave rule on it; their ids."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "INSERT INTO geofences (name, geometry) VALUES ('Depot', %s) RETURNING id",
            (Jsonb({"type": "Polygon", "coordinates": [DEPOT]}),),
        )
        fence = await cur.fetchone()
        assert fence is not None
        ids = []
        for name, op, for_s in (("yard dwell", "inside", 120), ("departure", "left", 0)):
            cur = await conn.execute(
                "INSERT INTO alert_rules (name, op, for_s, fence_id, severity, created_at)"
                " VALUES (%s, %s, %s, %s, 'major', %s) RETURNING id",
                (name, op, for_s, fence[0], created_at),
            )
            row = await cur.fetchone()
            assert row is not None
            ids.append(int(row[0]))
        return ids[0], ids[1]


async def publish(mqtt_url: str, device_id: str, start: datetime, seconds: list[int]) -> None:
    """These fixes of the truck, in this order, four to a message."""
    await publish_fixes(mqtt_url, device_id, start, seconds, lat=LAT, lon=longitude)


async def alerts_once_drained(database_url: str, device_id: str, stored: int, limit_s: float = 30) -> list[Any]:
    """The device's alerts (rule, state, started, raised, cleared, message), once `stored` fixes are stored and
    the feed is empty."""
    deadline = asyncio.get_running_loop().time() + limit_s
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while True:
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM telemetry WHERE device_id = %s), (SELECT count(*) FROM engine_feed)",
                (device_id,),
            )
            if await cur.fetchone() == (stored, 0):
                cur = await conn.execute(
                    "SELECT rule_id, state, started_at, raised_at, cleared_at, message FROM alerts"
                    " WHERE device_id = %s ORDER BY rule_id, started_at",
                    (device_id,),
                )
                return await cur.fetchall()
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not drained: {stored} fixes expected")
            await asyncio.sleep(0.05)


def kept(found: list[Any]) -> list[Any]:
    return [alert for alert in found if alert[1] != "retracted"]


def same(found: list[Any], wanted: list[tuple[Any, ...]]) -> bool:
    """Same rules, states and messages; times within a millisecond (crossings are interpolated)."""

    def close(a: datetime | None, b: datetime | None) -> bool:
        if a is None or b is None:
            return a is b
        return abs(a - b) < timedelta(milliseconds=1)

    return len(found) == len(wanted) and all(
        f[0] == w[0] and f[1] == w[1] and f[5] == w[5] and all(close(f[k], w[k]) for k in (2, 3, 4))
        for f, w in zip(found, wanted, strict=True)
    )


async def test_engine_a_truck_dwelling_in_a_fence_raises_one_alert_cleared_at_the_exit_in_order_or_late(
    bridge_settings: Settings, database_url: str, engine_process: StartEngine
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    dwell, departure = await add_depot_and_rules(database_url, created_at=start - timedelta(hours=1))
    s = [start + timedelta(seconds=x) for x in (9.5, 129.5, 150.5)]
    wanted = [
        (dwell, "cleared", s[0], s[1], s[2], "yard dwell: inside 'Depot' for more than 2 min"),
        (departure, "active", s[2], s[2], None, "departure: left 'Depot'"),
    ]
    in_order, late = (f"truck-{uuid.uuid4().hex[:6]}" for _ in range(2))
    shuffle = random.Random(11).sample
    engine_process("fence-rules")
    async with running_bridge(bridge_settings):
        # The first truck's fixes up to 100 s: in the depot, not yet for 2 min. The rest is evaluated later,
        # from the stay under way.
        await publish(bridge_settings.mqtt.url, in_order, start, SECONDS[:51])
        assert await alerts_once_drained(database_url, in_order, 51) == []
        await publish(bridge_settings.mqtt.url, in_order, start, SECONDS[51:])
        # The second truck's fixes arrive shuffled, the second half first: it is first seen inside at 86 s,
        # a stay of 64.5 s that raises nothing, until the late first half shows it drove in at 9.5 s.
        await publish(bridge_settings.mqtt.url, late, start, shuffle(SECONDS[43:], 43))
        found = await alerts_once_drained(database_url, late, 43)
        assert same(kept(found), [wanted[1]]), found
        await publish(bridge_settings.mqtt.url, late, start, shuffle(SECONDS[:43], 43))
        found_in_order = await alerts_once_drained(database_url, in_order, 86)
        found_late = await alerts_once_drained(database_url, late, 86)
    assert same(found_in_order, wanted), found_in_order
    # On the way, the late truck's alerts may have been raised for stays its later fixes disproved: those
    # are retracted, and what is left is what the ordered delivery gave.
    assert same(kept(found_late), wanted), found_late
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT e.kind, count(*) FROM alert_events e JOIN alerts a ON a.id = e.alert_id"
            " WHERE a.device_id = %s AND a.rule_id = %s GROUP BY e.kind ORDER BY e.kind",
            (in_order, dwell),
        )
        assert await cur.fetchall() == [("cleared", 1), ("raised", 1)]
