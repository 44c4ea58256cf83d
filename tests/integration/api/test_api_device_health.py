"""Device health over HTTP on a real database: the score follows open alerts, time offline and a rising
engine-temperature baseline, and a group's summary ranks its worst devices."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta

import httpx
import psycopg
import pytest

pytestmark = pytest.mark.integration


async def test_health_explains_its_score_and_a_group_ranks_its_devices(
    http: httpx.AsyncClient, database_url: str
) -> None:
    group = f"h-{uuid.uuid4().hex[:6]}"
    sick, well, silent = f"{group}-sick", f"{group}-well", f"{group}-silent"
    now = datetime.now(UTC)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO device_groups (name) VALUES (%s)", (group,))
        await conn.execute(
            "INSERT INTO devices (id, kind, group_name) VALUES (%s, 'truck', %s), (%s, 'truck', %s), (%s, 'truck', %s)",
            (sick, group, well, group, silent, group),
        )
        # Presence: `sick` offline for the last 3.5 of 7 days; `well` online throughout; `silent` unknown.
        await conn.execute(
            "INSERT INTO presence_history (device_id, at, presence, source) VALUES"
            " (%s, %s, 'online', 'status'), (%s, %s, 'offline', 'heartbeat'), (%s, %s, 'online', 'status')",
            (sick, now - timedelta(days=10), sick, now - timedelta(days=3.5), well, now - timedelta(days=9)),
        )
        rule = await (
            await conn.execute(
                "INSERT INTO alert_rules (name, metric, op, threshold, severity) VALUES ('hot', 'engine_temp', '>', 110,"
                " 'critical') RETURNING id"
            )
        ).fetchone()
        assert rule is not None
        await conn.execute(
            "INSERT INTO alerts (rule_id, device_id, started_at, raised_at, severity, state, message)"
            " VALUES (%s, %s, %s, %s, 'critical', 'active', 'hot')",
            (rule[0], sick, now - timedelta(hours=1), now - timedelta(hours=1)),
        )
        # Engine temperature: `sick` rises 2 °C a day over ten days, `well` holds steady.
        for day in range(10):
            ts = (now - timedelta(days=10 - day)).replace(minute=0, second=0, microsecond=0)
            for device, temp in ((sick, 80.0 + 2.0 * day), (well, 85.0)):
                await conn.execute(
                    "INSERT INTO telemetry_1h (device_id, ts, samples, engine_temp_n, engine_temp_sum)"
                    " VALUES (%s, %s, 60, 60, %s)",
                    (device, ts, temp * 60),
                )

    sick_health = (await http.get(f"/api/v1/devices/{sick}/health")).json()
    points = {p["name"]: p["points"] for p in sick_health["parts"]}
    assert points["open critical alerts"] == 25
    assert points["presence"] == pytest.approx(10.0, abs=0.2)  # offline half the week
    assert points["engine temperature trend"] == 15.0
    assert sick_health["score"] == pytest.approx(100 - 25 - 10 - 15, abs=0.2)
    assert sick_health["parts"][0]["name"] == "open critical alerts"

    well_health = (await http.get(f"/api/v1/devices/{well}/health")).json()
    assert well_health["score"] == 100.0
    assert (await http.get("/api/v1/devices/nobody/health")).status_code == 404

    summary = (await http.get(f"/api/v1/groups/{group}/health")).json()
    assert (summary["devices"], summary["good"], summary["fair"], summary["poor"]) == (3, 2, 1, 0)
    first = summary["worst"][0]
    assert (first["device_id"], first["main_reason"]) == (sick, "open critical alerts")
    assert summary["worst"][-1]["score"] == 100.0
