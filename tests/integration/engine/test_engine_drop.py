"""A rate-of-change rule through the real bridge and engine: fuel siphoned from a parked truck raises
one alert at the sample where the fall first exceeds the limit, also when part of the theft arrives late."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import psycopg
import pytest

from config import Settings
from tests.integration.bridge.conftest import running_bridge
from tests.integration.engine.scenario import Truck, publish, stored_alerts, wait_drained

pytestmark = pytest.mark.integration

StartEngine = Callable[[str], subprocess.Popen[bytes]]


@dataclass(frozen=True)
class FuelTruck(Truck):
    """Fuel levels a second apart, with the speed of each sample."""

    speeds: tuple[float, ...] = ()

    def sample(self, i: int) -> dict[str, Any]:
        ts = self.start + timedelta(seconds=i)
        return {
            "seq": i,
            "ts": ts.isoformat(),
            "pos": {"lat": 52.5, "lon": 13.4, "speed": self.speeds[i]},
            "metrics": {"fuel": self.values[i]},
        }


async def evaluated(database_url: str, device_id: str, *, stored: int, last_seq: int, limit_s: float = 60) -> None:
    """Until the device's samples are stored, the feed is empty and the engine's head is at `last_seq`."""
    deadline = asyncio.get_running_loop().time() + limit_s
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while True:
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM telemetry WHERE device_id = %s), (SELECT count(*) FROM engine_feed),"
                " (SELECT seq FROM engine_heads WHERE device_id = %s)",
                (device_id, device_id),
            )
            row = await cur.fetchone()
            if row == (stored, 0, last_seq):
                return
            assert asyncio.get_running_loop().time() < deadline, f"not evaluated: {row}"
            await asyncio.sleep(0.05)


def theft(device_id: str, start: datetime, only: tuple[int, ...] | None = None) -> FuelTruck:
    # 60 s driving (burning 0.01 %/s), 120 s parked, 60 s siphoned at 0.4 %/s, 120 s parked.
    levels = [80.0 - 0.01 * s for s in range(60)]
    levels += [levels[-1]] * 120
    levels += [levels[-1] - 0.4 * (s + 1) for s in range(60)]
    levels += [levels[-1]] * 120
    speeds = (50.0,) * 60 + (0.0,) * 300
    return FuelTruck(device_id, start, [round(v, 2) for v in levels], only, speeds)


async def test_fuel_siphoned_while_parked_raises_one_alert_in_order_and_with_the_theft_arriving_late(
    bridge_settings: Settings, database_url: str, engine_process: StartEngine
) -> None:
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=10)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "INSERT INTO alert_rules (name, metric, op, threshold, window_s, while_parked, severity, created_at)"
            " VALUES ('fuel theft', 'fuel', 'drop', 15, 300, true, 'critical', %s) RETURNING id",
            (start - timedelta(minutes=1),),
        )
        row = await cur.fetchone()
        assert row is not None
        rule_id = row[0]
    in_order, late = f"truck-{uuid.uuid4().hex[:6]}", f"truck-{uuid.uuid4().hex[:6]}"
    theft_part = tuple(range(190, 230))
    engine_process("drop")
    async with running_bridge(bridge_settings):
        await publish(bridge_settings.mqtt.url, [theft(in_order, start)], per_message=20)
        before = tuple(i for i in range(360) if i not in theft_part)
        await publish(bridge_settings.mqtt.url, [theft(late, start, before)], per_message=20)
        await evaluated(database_url, late, stored=len(before), last_seq=359)
        await publish(bridge_settings.mqtt.url, [theft(late, start, theft_part)], per_message=20)
        await wait_drained(database_url, [in_order, late], 360)
    # The parked level is 79.41 from 60 s on; siphoned from 180 s, it is first more than 15 below at 217 s.
    alerts = await stored_alerts(database_url, rule_id)
    levels = theft(in_order, start).values
    first = next(i for i in range(180, 360) if levels[59] - levels[i] > 15)
    when = start + timedelta(seconds=first)
    assert alerts == {in_order: [(when, when, None, "active")], late: [(when, when, None, "active")]}
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT message FROM alerts WHERE rule_id = %s LIMIT 1", (rule_id,))
        message = await cur.fetchone()
    assert message is not None
    assert message[0].startswith("fuel theft: fuel fell more than 15 within 300 s while parked (fell 15.")
