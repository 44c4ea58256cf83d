"""Maintenance through the rules engine on real servers: a schedule by odometer raises one alert when the
service falls due, a logged service clears it, and the next interval raises it again."""

from __future__ import annotations

import asyncio
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import psycopg
import pytest

from api.server import running
from tests.integration.api.conftest import mint_token, settings_for

pytestmark = pytest.mark.integration

WAIT_S = 30.0
StartEngine = Callable[[str], subprocess.Popen[bytes]]


async def odometer(database_url: str, device: str, seq: int, km: float) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO telemetry (ts, received_at, seq, boot, device_id, odometer) VALUES (%s, now(), %s, 1, %s, %s)",
            (datetime.now(UTC) + timedelta(milliseconds=seq), seq, device, km),
        )


async def alerts_of(database_url: str, rule_id: int) -> list[tuple[Any, ...]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cur = await conn.execute(
            "SELECT started_at, state, value FROM alerts WHERE rule_id = %s ORDER BY started_at", (rule_id,)
        )
        return await cur.fetchall()


async def wait_alerts(database_url: str, rule_id: int, want: list[str]) -> list[tuple[Any, ...]]:
    deadline = asyncio.get_running_loop().time() + WAIT_S
    while True:
        found = await alerts_of(database_url, rule_id)
        if [row[1] for row in found] == want:
            return found
        assert asyncio.get_running_loop().time() < deadline, f"alerts {found}, expected states {want}"
        await asyncio.sleep(0.2)


async def test_an_odometer_schedule_fires_once_when_due_is_cleared_by_a_service_and_fires_again(
    database_url: str, redis_url: str, engine_process: StartEngine
) -> None:
    device = f"svc-{uuid.uuid4().hex[:6]}"
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO devices (id, kind) VALUES (%s, 'truck')", (device,))
    settings = settings_for(redis_url, database_url)
    settings = replace(settings, commands=replace(settings.commands, dispatch_interval_s=1.0))
    headers = {"Authorization": f"Bearer {mint_token(settings, 'mechanic', 'operator')}"}
    async with running(settings) as api_url, httpx.AsyncClient(base_url=api_url, headers=headers, timeout=10) as http:
        made = await http.post(
            "/api/v1/maintenance-schedules",
            json={"name": "oil change", "basis": "odometer", "every": 1000, "device": device},
        )
        assert made.status_code == 201, made.text
        schedule = made.json()
        rule_id = schedule["rule_id"]
        listed = (await http.get("/api/v1/rules")).json()["items"]
        assert rule_id not in [r["id"] for r in listed], "managed as a schedule"

        engine_process("maintenance")
        await odometer(database_url, device, 1, 1000.0)  # where the first interval starts
        await odometer(database_url, device, 2, 1900.0)
        await asyncio.sleep(6)  # more than a sweep: 900 of 1,000 km is not due
        assert await alerts_of(database_url, rule_id) == []
        await odometer(database_url, device, 3, 2050.0)
        (first,) = await wait_alerts(database_url, rule_id, ["active"])
        assert first[2] == pytest.approx(1050.0)
        await odometer(database_url, device, 4, 2200.0)
        await asyncio.sleep(6)
        assert len(await alerts_of(database_url, rule_id)) == 1, "one alert per interval, however far past"

        status = (await http.get(f"/api/v1/devices/{device}/maintenance")).json()
        assert [(s["name"], s["due"], s["used"]) for s in status["schedules"]] == [("oil change", True, 1200.0)]

        logged = await http.post(
            f"/api/v1/devices/{device}/maintenance", json={"schedule_id": schedule["id"], "notes": "5W-30"}
        )
        assert logged.status_code == 201, logged.text
        entry = logged.json()
        assert (entry["odometer"], entry["done_by"]) == (2200.0, "mechanic")
        await wait_alerts(database_url, rule_id, ["cleared"])

        await odometer(database_url, device, 5, 3100.0)  # 900 km into the next interval
        await asyncio.sleep(6)
        assert len(await alerts_of(database_url, rule_id)) == 1
        await odometer(database_url, device, 6, 3250.0)
        found = await wait_alerts(database_url, rule_id, ["cleared", "active"])
        assert found[1][0] == datetime.fromisoformat(entry["done_at"]), "the next interval counts from the service"

        status = (await http.get(f"/api/v1/devices/{device}/maintenance")).json()
        assert [e["notes"] for e in status["log"]] == ["5W-30"]
        assert (await http.delete(f"/api/v1/maintenance-schedules/{schedule['id']}")).status_code == 204
        await wait_alerts(database_url, rule_id, ["cleared", "cleared"])
