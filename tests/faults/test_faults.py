"""Faults injected into the running stack, with Jepsen-style accounting: 0 lost and 0 duplicated rows.

Each scenario runs on servers of its own (`FaultRig`, which the fault kills or stops: never the
session's shared servers): 20 simulated trucks at 20 samples/s each, through the project's TCP proxy,
to Mosquitto, a `python -m bridge` child, PostgreSQL and Redis. See `harness.py` for the run and
`accounting.py` for what is counted. Sizes and durations come from `FLEETBRIDGE_FAULTS_*`.
"""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import psycopg
import pytest

from api.server import running
from tests.faults.harness import (
    DEVICE_PREFIX,
    FAULTS,
    BridgeKills,
    DatabaseLinkResets,
    Fault,
    FaultParams,
    FaultResult,
    FaultRig,
    LinkCut,
    RedisRestartEmpty,
    run_fault,
)
from tests.integration.api.conftest import TEST_JWT_SECRET, mint_token

pytestmark = [pytest.mark.faults, pytest.mark.integration]

# Text casts: `real` columns read back as the shortest decimal, as the cache stores them (bridge.rebuild).
NEWEST_ROWS = (
    "SELECT DISTINCT ON (device_id) device_id, ts, boot, seq, lat, lon, fuel::text, engine_temp::text"
    " FROM telemetry WHERE starts_with(device_id, %s) ORDER BY device_id, ts DESC, boot DESC, seq DESC"
)


def assert_nothing_lost_or_duplicated(result: FaultResult) -> None:
    t = result.tally
    print(f"\n{result.row()}\n{t}")
    assert t.generated > 0
    assert (t.lost, t.lost_acknowledged, t.duplicated, t.unexpected) == (0, 0, 0, 0), t
    assert (t.held, t.dropped, t.refused) == (0, 0, 0), "every generated sample must be stored, none given up"
    assert t.stored == t.generated == t.rows
    assert t.acknowledged >= t.generated, "every sample was acknowledged by the broker at least once"
    assert result.first_commit_s is not None, "nothing was committed after the fault"
    assert result.drained_s is not None, "the backlog from before the fault's end never drained"


async def rest_states(rig: FaultRig, devices: list[str]) -> dict[str, Any]:
    """Each device's state as the API serves it (an in-process API on the rig's Redis and database)."""
    settings = replace(rig.settings, api=replace(rig.settings.api, jwt_secret=TEST_JWT_SECRET))
    headers = {"Authorization": f"Bearer {mint_token(settings, 'fault-admin', 'admin')}"}
    async with running(settings) as url, httpx.AsyncClient(base_url=url, headers=headers, timeout=10) as http:
        states = {}
        for device in devices:
            response = await http.get(f"/api/v1/devices/{device}/state")
            assert response.status_code == 200, (device, response.text)
            states[device] = response.json()
    return states


async def assert_state_is_the_newest_row(rig: FaultRig) -> None:
    with psycopg.connect(rig.postgres.url) as conn:
        newest = {row[0]: row[1:] for row in conn.execute(NEWEST_ROWS, (DEVICE_PREFIX,)).fetchall()}
    assert len(newest) == rig.params.devices
    states = await rest_states(rig, sorted(newest))
    for device, (ts, boot, seq, lat, lon, fuel, engine_temp) in newest.items():
        state = states[device]
        position = state["position"]
        assert (position["seq"], position["lat"], position["lon"]) == (seq, lat, lon), device
        # The cache keeps device time to the millisecond (models.state.encode_field).
        assert datetime.fromisoformat(position["ts"]) == datetime.fromtimestamp(int(ts.timestamp() * 1000) / 1000, UTC)
        metrics = state["metrics"]
        assert (metrics["fuel"]["seq"], metrics["fuel"]["boot"]) == (seq, boot), device
        assert (metrics["fuel"]["value"], metrics["engine_temp"]["value"]) == (float(fuel), float(engine_temp))


async def run_scenario(fault: Fault, params: FaultParams, base: Path) -> tuple[FaultRig, FaultResult]:
    rig = FaultRig(base, params)
    await asyncio.to_thread(rig.__enter__)
    try:
        result = await asyncio.to_thread(run_fault, rig, fault, progress=print)
    except BaseException:
        await asyncio.to_thread(rig.close)
        raise
    return rig, result


@pytest.mark.parametrize("fault", FAULTS, ids=lambda fault: fault.name)
async def test_fault_loses_and_duplicates_nothing(
    fault: Fault, fault_params: FaultParams, servers_dir: Path, record_fault: list[FaultResult]
) -> None:
    rig, result = await run_scenario(fault, fault_params, servers_dir / f"{fault.name}-{uuid.uuid4().hex[:6]}")
    try:
        record_fault.append(result)
        assert_nothing_lost_or_duplicated(result)
        if isinstance(fault, BridgeKills):
            assert rig.bridge_starts == fault_params.kills + 1
            assert all(child.returncode == -9 for child in rig.bridges[:-1]), "each was SIGKILLed"
        if isinstance(fault, RedisRestartEmpty):
            assert result.committed_during_fault, "the bridge must keep committing while Redis is down"
            await assert_state_is_the_newest_row(rig)
        if isinstance(fault, DatabaseLinkResets):
            assert rig.database_proxy.stats.cut >= 3, "the bridge's database links were reset"
        if isinstance(fault, LinkCut):
            assert rig.victim_proxy.stats.cut >= 1
            assert rig.victim.stats().connects >= 2, "the device came back after its link was cut"
    finally:
        await asyncio.to_thread(rig.close)
