"""The engine on the real servers: bridge -> feed -> engine -> alerts, exactly once through kills,
outages, late samples and two instances."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from config import Settings
from tests.integration.bridge.conftest import running_bridge
from tests.integration.engine.scenario import (
    Truck,
    add_rule,
    publish,
    stored_alerts,
    temperatures,
    wait_drained,
)
from tests.integration.stopping import wait_stopped

pytestmark = pytest.mark.integration

StartEngine = Callable[[str], subprocess.Popen[bytes]]


def fleet(count: int, samples: int) -> list[Truck]:
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    tag = uuid.uuid4().hex[:6]
    return [Truck(f"truck-{tag}-{n}", start, temperatures(samples, phase=n * 17)) for n in range(count)]


def expected(trucks: list[Truck]) -> dict[str, list[tuple[datetime, datetime, datetime | None, str]]]:
    return {
        t.device_id: [(s, r, c, "active" if c is None else "cleared") for s, r, c in t.expected()]
        for t in trucks
        if t.expected()
    }


async def event_counts(database_url: str, rule_id: int) -> dict[str, int]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT e.kind, count(*) FROM alert_events e JOIN alerts a ON a.id = e.alert_id"
            " WHERE a.rule_id = %s GROUP BY e.kind",
            (rule_id,),
        )
        return dict(await cur.fetchall())


async def test_engine_overheating_truck_gives_exactly_one_alert_that_clears_with_hysteresis(
    bridge_settings: Settings, database_url: str, engine_process: StartEngine
) -> None:
    rule_id = await add_rule(database_url)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    # 40 s at 90 °C, 45 s at 115 °C (raises after 30 s), 10 s at 105 °C (in the band: still active),
    # 25 s at 95 °C (clears after 20 s below 100).
    values = [90.0] * 40 + [115.0] * 45 + [105.0] * 10 + [95.0] * 25
    truck = Truck(f"truck-{uuid.uuid4().hex[:6]}", start, values)
    engine_process("solo")
    async with running_bridge(bridge_settings):
        await publish(bridge_settings.mqtt.url, [truck], per_message=10)
        await wait_drained(database_url, [truck.device_id], len(values))
    alerts = await stored_alerts(database_url, rule_id)
    assert alerts == {
        truck.device_id: [
            (start + timedelta(seconds=40), start + timedelta(seconds=70), start + timedelta(seconds=115), "cleared")
        ]
    }
    assert await event_counts(database_url, rule_id) == {"raised": 1, "cleared": 1}


async def test_engine_killed_and_stopped_during_a_scenario_emits_every_alert_exactly_once(
    bridge_settings: Settings, database_url: str, engine_process: StartEngine
) -> None:
    rule_id = await add_rule(database_url)
    trucks = fleet(6, 300)
    engine = engine_process("kill-a")
    async with running_bridge(bridge_settings):
        publishing = asyncio.create_task(publish(bridge_settings.mqtt.url, trucks, per_message=5, pace_s=0.08))
        for round_ in range(4):
            await asyncio.sleep(0.7)
            engine.kill()  # SIGKILL, mid-cycle or not
            engine.wait(timeout=10)
            if round_ == 2:
                await asyncio.sleep(2.0)  # an outage: the feed piles up meanwhile
            engine = engine_process(f"kill-{round_}")
        await publishing
        await wait_drained(database_url, [t.device_id for t in trucks], 300)
    assert await stored_alerts(database_url, rule_id) == expected(trucks)
    wanted = expected(trucks)
    raised = sum(len(v) for v in wanted.values())
    cleared = sum(1 for v in wanted.values() for a in v if a[3] == "cleared")
    assert raised >= 6
    assert await event_counts(database_url, rule_id) == {"raised": raised, "cleared": cleared}


async def test_engine_late_samples_reevaluate_their_window_and_retract_what_no_longer_holds(
    bridge_settings: Settings, database_url: str, engine_process: StartEngine
) -> None:
    rule_id = await add_rule(database_url)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=2)
    values = [90.0] * 10 + [115.0] * 40 + [90.0] * 10
    truck = Truck(f"truck-{uuid.uuid4().hex[:6]}", start, values)
    # The samples from 25 s to 29 s arrive last (a store-and-forward backlog): without them the run from
    # 10 s to 49 s held 30 s; with the cool readings placed at 25 s it holds only 20 s, from 30 s.
    cooled = Truck(truck.device_id, start, [*values[:25], *([90.0] * 5), *values[30:]])
    engine_process("late")
    async with running_bridge(bridge_settings):
        early = Truck(truck.device_id, start, values)
        await publish(bridge_settings.mqtt.url, [_without(early, range(25, 30))], per_message=5)
        await wait_until_alerts(database_url, rule_id, 1)
        await publish(bridge_settings.mqtt.url, [_only(cooled, range(25, 30))], per_message=5)
        await wait_drained(database_url, [truck.device_id], len(values))
    assert await stored_alerts(database_url, rule_id) == expected([cooled]) == {}
    assert await event_counts(database_url, rule_id) == {"raised": 1, "retracted": 1}


async def test_engine_two_instances_split_the_partitions_and_each_alert_is_written_once(
    bridge_settings: Settings, database_url: str, engine_process: StartEngine
) -> None:
    rule_id = await add_rule(database_url)
    engine_process("pair-a")
    engine_process("pair-b")
    parts = await wait_split(database_url, ["pair-a", "pair-b"])
    assert len(parts["pair-a"]) == len(parts["pair-b"]) == 8
    assert not set(parts["pair-a"]) & set(parts["pair-b"])
    trucks = fleet(12, 200)
    async with running_bridge(bridge_settings):
        await publish(bridge_settings.mqtt.url, trucks, per_message=10)
        await wait_drained(database_url, [t.device_id for t in trucks], 200)
    assert await stored_alerts(database_url, rule_id) == expected(trucks)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute(
            "SELECT objid, count(DISTINCT pid) FROM pg_locks WHERE locktype = 'advisory' AND classid = %s"
            " AND granted GROUP BY objid",
            (0x456E67,),
        )
        holders = dict(await cur.fetchall())
    assert sorted(holders) == list(range(16))
    assert set(holders.values()) == {1}


async def test_engine_stops_promptly_and_quietly_on_sigterm(database_url: str, engine_process: StartEngine) -> None:
    engine = engine_process("stopper")
    await wait_split(database_url, ["stopper"])
    engine.send_signal(signal.SIGTERM)
    assert wait_stopped(engine) == 0
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        cur = await conn.execute("SELECT count(*) FROM engine_instances WHERE name = 'stopper'")
        assert await cur.fetchone() == (0,)


def _without(truck: Truck, skipped: range) -> Truck:
    return replace(truck, only=tuple(i for i in range(len(truck.values)) if i not in skipped))


def _only(truck: Truck, kept: range) -> Truck:
    return replace(truck, only=tuple(kept))


async def wait_until_alerts(database_url: str, rule_id: int, count: int, limit_s: float = 30) -> None:
    deadline = asyncio.get_running_loop().time() + limit_s
    while sum(len(v) for v in (await stored_alerts(database_url, rule_id)).values()) < count:
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"fewer than {count} alerts")
        await asyncio.sleep(0.1)


async def wait_split(database_url: str, names: list[str], limit_s: float = 30) -> dict[str, list[int]]:
    """The partitions each named instance holds, once all 16 are held and split evenly.

    An instance that starts before the others' first heartbeat takes more than its share at first, and
    gives the surplus back on its next rebalance: only the settled split is the answer.
    """
    deadline = asyncio.get_running_loop().time() + limit_s
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while True:
            cur = await conn.execute("SELECT name, parts FROM engine_instances WHERE name = ANY(%s)", (names,))
            parts = {name: list(held) for name, held in await cur.fetchall()}
            held = [part for p in parts.values() for part in p]
            even = (
                all(len(p) == 16 // len(names) for p in parts.values()) if 16 % len(names) == 0 else all(parts.values())
            )
            if len(parts) == len(names) and sorted(held) == list(range(16)) and even:
                return parts
            if asyncio.get_running_loop().time() > deadline:
                raise AssertionError(f"partitions not split: {parts}")
            await asyncio.sleep(0.1)


async def test_engine_presence_rule_raises_once_for_a_device_offline_too_long_and_clears_when_back(
    database_url: str, engine_process: StartEngine
) -> None:
    device = f"truck-{uuid.uuid4().hex[:6]}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        offline_since = datetime.now(UTC) - timedelta(minutes=20)
        await conn.execute(
            "INSERT INTO devices (id, presence, presence_source, presence_since) VALUES (%s, 'offline', 'status', %s)",
            (device, offline_since),
        )
        cur = await conn.execute(
            "INSERT INTO alert_rules (name, op, for_s, severity, device_id) VALUES ('gone', 'offline', 600, 'major', %s)"
            " RETURNING id",
            (device,),
        )
        row = await cur.fetchone()
        assert row is not None
        rule_id = row[0]
        engine = engine_process("presence")
        await wait_until_alerts(database_url, rule_id, 1)
        engine.kill()  # a restart must not raise it again
        engine.wait(timeout=10)
        engine_process("presence-2")
        back = datetime.now(UTC)
        await conn.execute("UPDATE devices SET presence = 'online', presence_since = %s WHERE id = %s", (back, device))
        deadline = asyncio.get_running_loop().time() + 30
        while (await stored_alerts(database_url, rule_id))[device][0][3] != "cleared":
            assert asyncio.get_running_loop().time() < deadline, "presence alert not cleared"
            await asyncio.sleep(0.1)
    assert (await stored_alerts(database_url, rule_id))[device] == [
        (offline_since, offline_since + timedelta(minutes=10), back, "cleared")
    ]
    assert await event_counts(database_url, rule_id) == {"raised": 1, "cleared": 1}
