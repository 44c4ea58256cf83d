"""A fleet scenario for the engine tests: trucks whose engines overheat in episodes, published through the
bridge, and the alerts the pure evaluation expects from exactly those samples."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import aiomqtt
import msgspec
import psycopg

from engine.threshold import IDLE, Cleared, Point, Raised, SampleKey, evaluate
from models.rules import Condition

# engine_temp > 110 for 30 s; clears below 100 for 20 s.
HOT_RULE: dict[str, Any] = {
    "name": "engine overheating",
    "metric": "engine_temp",
    "op": ">",
    "threshold": 110.0,
    "for_s": 30,
    "clear_threshold": 100.0,
    "clear_for_s": 20,
    "severity": "critical",
}
HOT = Condition(op=">", threshold=110, for_s=30, clear_threshold=100, clear_for_s=20)


async def add_rule(database_url: str, **fields: Any) -> int:
    """Insert a rule as the API would (the API's own tests cover validation); return its id."""
    rule = HOT_RULE | fields
    columns = ", ".join("group_name" if k == "group" else k for k in rule)
    marks = ", ".join(["%s"] * len(rule))
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            f"INSERT INTO alert_rules ({columns}) VALUES ({marks}) RETURNING id", list(rule.values())
        )
        row = await cur.fetchone()
        assert row is not None
        return int(row[0])


def temperatures(samples: int, phase: float) -> list[float]:
    """An engine that heats past 110 °C and cools below 100 °C in slow waves, shifted by `phase`."""
    return [round(105 + 12 * math.sin((i + phase) * 2 * math.pi / 120), 1) for i in range(samples)]


@dataclass(frozen=True, slots=True)
class Truck:
    """One truck's series: a sample a second from `start`."""

    device_id: str
    start: datetime
    values: list[float]
    only: tuple[int, ...] | None = None  # publish only these samples (late ones, or all but them)

    def indices(self) -> list[int]:
        return list(self.only) if self.only is not None else list(range(len(self.values)))

    def sample(self, i: int) -> dict[str, Any]:
        ts = self.start + timedelta(seconds=i)
        return {"seq": i, "ts": ts.isoformat(), "metrics": {"engine_temp": self.values[i]}}

    def expected(self, condition: Condition = HOT) -> list[tuple[datetime, datetime, datetime | None]]:
        """(started, raised, cleared) of every alert the series gives."""
        points = [Point(SampleKey(self.start + timedelta(seconds=i), 0, i), v) for i, v in enumerate(self.values)]
        found: dict[datetime, list[datetime | None]] = {}
        for outcome in evaluate(condition, IDLE, points).outcomes:
            if isinstance(outcome, Raised):
                found[outcome.started_at] = [outcome.raised_at, None]
            elif isinstance(outcome, Cleared):
                found[outcome.started_at][1] = outcome.cleared_at
        return [(start, raised, cleared) for start, (raised, cleared) in sorted(found.items()) if raised is not None]


def broker(url: str) -> tuple[str, int]:
    host, port = url.removeprefix("mqtt://").split(":")
    return host, int(port)


async def publish(mqtt_url: str, trucks: list[Truck], *, per_message: int, pace_s: float = 0.0) -> None:
    """Each truck's samples in order, `per_message` to a message, at QoS 1; `pace_s` between rounds."""
    host, port = broker(mqtt_url)
    async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        longest = max(len(t.indices()) for t in trucks)
        for first in range(0, longest, per_message):
            for truck in trucks:
                chunk = [truck.sample(i) for i in truck.indices()[first : first + per_message]]
                if chunk:
                    body = msgspec.json.encode({"samples": chunk})
                    await client.publish(f"fleet/v1/{truck.device_id}/telemetry", body, qos=1)
            if pace_s:
                await asyncio.sleep(pace_s)


async def stored_alerts(database_url: str, rule_id: int) -> dict[str, list[tuple[Any, ...]]]:
    """Per device: (started, raised, cleared, state) of every alert of the rule that is not retracted."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT device_id, started_at, raised_at, cleared_at, state FROM alerts"
            " WHERE rule_id = %s AND state <> 'retracted' ORDER BY device_id, started_at",
            (rule_id,),
        )
        found: dict[str, list[tuple[Any, ...]]] = {}
        for device_id, *rest in await cur.fetchall():
            found.setdefault(device_id, []).append(tuple(rest))
        return found


async def wait_drained(database_url: str, devices: list[str], samples: int, limit_s: float = 60) -> None:
    """Until every sample is stored, the feed is empty and every device's head is its last sample."""
    deadline = asyncio.get_running_loop().time() + limit_s
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while True:
            cur = await conn.execute(
                "SELECT (SELECT count(*) FROM telemetry WHERE device_id = ANY(%s)),"
                " (SELECT count(*) FROM engine_feed),"
                " (SELECT count(*) FROM engine_heads WHERE device_id = ANY(%s) AND seq = %s)",
                (devices, devices, samples - 1),
            )
            row = await cur.fetchone()
            assert row is not None
            if row == (samples * len(devices), 0, len(devices)):
                return
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"not drained: stored, feed rows, devices at their last sample = {row}")
            await asyncio.sleep(0.1)


async def holding(database_url: str, instance: str, limit_s: float = 30) -> None:
    """Until the engine instance holds feed partitions (it is running its cycles)."""
    deadline = asyncio.get_running_loop().time() + limit_s
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while True:
            cur = await conn.execute("SELECT cardinality(parts) FROM engine_instances WHERE name = %s", (instance,))
            row = await cur.fetchone()
            if row is not None and row[0] > 0:
                return
            assert asyncio.get_running_loop().time() < deadline, f"engine {instance} never took a partition"
            await asyncio.sleep(0.05)


async def publish_fixes(
    mqtt_url: str, device_id: str, start: datetime, seconds: Iterable[int], *, lat: float, lon: Callable[[int], float]
) -> None:
    """A fix at each of these seconds after `start` (at `lat` and `lon(second)`), in this order, four to a
    message, `seq` the second."""
    chosen = list(seconds)
    host, port = broker(mqtt_url)
    async with aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as client:
        for first in range(0, len(chosen), 4):
            samples = [
                {"seq": i, "ts": (start + timedelta(seconds=i)).isoformat(), "pos": {"lat": lat, "lon": lon(i)}}
                for i in chosen[first : first + 4]
            ]
            await client.publish(f"fleet/v1/{device_id}/telemetry", msgspec.json.encode({"samples": samples}), qos=1)
