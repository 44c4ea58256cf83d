"""A simulator scenario through the whole pipeline: an overheating simulated truck, on the real broker,
bridge and engine, raises the default overheating rule's alert exactly once, and it clears."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import psycopg
import pytest

from config import Settings
from engine.threshold import IDLE, Cleared, Point, Raised, SampleKey, evaluate
from firmware_sim.address import parse_broker_url
from firmware_sim.fleet import Fleet, FleetOptions, device_ids
from firmware_sim.scenario import Scenario
from firmware_sim.truck import Truck
from models.default_rules import DEFAULT_RULES
from models.rule_store import add_rule
from models.rules import condition_of
from tests.integration.bridge.conftest import running_bridge
from tests.integration.engine.scenario import stored_alerts, wait_drained

pytestmark = pytest.mark.integration

StartEngine = Callable[[str], subprocess.Popen[bytes]]
# Hot for 40 s at its peak, then cooling: raised after 30 s above 110 °C, cleared after 60 s below 100 °C.
OVERHEAT = Scenario("overheat", start_s=5, for_s=40)
SAMPLES = 180


async def test_engine_overheat_scenario_truck_raises_the_default_alert_exactly_once_and_it_clears(
    bridge_settings: Settings, database_url: str, engine_process: StartEngine
) -> None:
    hot = next(spec for spec in DEFAULT_RULES if spec.name == "engine overheating")
    with psycopg.connect(database_url, autocommit=True) as conn:
        rule_id = add_rule(conn, hot, "test")["id"]
    options = FleetOptions(devices=1, prefix=f"hot{uuid.uuid4().hex[:6]}-", scenarios={0: OVERHEAT})
    (device_id,) = device_ids(options.prefix, 1)
    start = datetime.now(UTC).replace(microsecond=0) + timedelta(seconds=1)
    # The same truck stepped alone gives the same readings: what the engine should make of them.
    twin = Truck(device_id, seed=options.seed, scenario=OVERHEAT)
    readings = [twin.step(start + timedelta(seconds=i), 1.0) for i in range(SAMPLES)]
    points = [Point(SampleKey(s.ts, 0, s.seq), s.metrics["engine_temp"]) for s in readings]
    outcomes = evaluate(condition_of(hot), IDLE, points).outcomes
    assert [type(o) for o in outcomes] == [Raised, Cleared]
    raised, cleared = outcomes
    assert isinstance(raised, Raised)
    assert isinstance(cleared, Cleared)

    def drive() -> None:
        # Device time runs a second a step, as fast as the broker takes it (within the bridge's future skew).
        for i in range(SAMPLES):
            fleet.step_all(start + timedelta(seconds=i), 1.0)
        assert fleet.wait_acked(10.0)

    engine_process("scenario")
    fleet = Fleet(parse_broker_url(bridge_settings.mqtt.url), options)
    fleet.start()
    try:
        async with running_bridge(bridge_settings):
            assert await asyncio.to_thread(fleet.wait_connected, 10.0)
            await asyncio.to_thread(drive)
            await wait_drained(database_url, [device_id], SAMPLES)
    finally:
        await asyncio.to_thread(fleet.close)
    assert (await stored_alerts(database_url, rule_id)) == {
        device_id: [(raised.started_at, raised.raised_at, cleared.cleared_at, "cleared")]
    }
