"""A sample is (device, boot, seq) in every layer: a reboot that repeats an earlier boot's ts and seq
sends new samples, stored and reported as such; a resend of one (boot, seq) is still stored once."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import msgspec
import psycopg
import pytest
import redis.asyncio as aioredis

from config import Settings
from models.state import Persisted, state_from_fields, state_key
from tests.integration.bridge.conftest import running_bridge
from tests.integration.bridge.test_pipeline import broker, wait_committed

pytestmark = pytest.mark.integration
DEVICE = "reboot-1"


def sample(boot: int, fuel: float, ts: datetime) -> dict[str, Any]:
    return {
        "seq": 7,
        "boot": boot,
        "ts": ts.isoformat(),
        "metrics": {"fuel": fuel},
        "pos": {"lat": 50.0 + boot, "lon": 4.0},
    }


async def test_samples_of_two_boots_with_equal_ts_and_seq_are_both_stored_and_reported(
    bridge_settings: Settings,
) -> None:
    host, port = broker(bridge_settings.mqtt.url)
    ts = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    first, second = sample(1, 10.0, ts), sample(2, 20.0, ts)
    persisted: list[Persisted] = []
    async with (
        running_bridge(bridge_settings) as bridge,
        aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as device,
    ):
        await device.subscribe(f"fleet/v1/{DEVICE}/persisted", qos=1)
        # One commit each: boot 1's sample, boot 2's (same ts and seq), and boot 1's again (a resend).
        for n, payload in enumerate((first, second, first), start=1):
            await device.publish(f"fleet/v1/{DEVICE}/telemetry", msgspec.json.encode(payload), qos=1)
            await wait_committed(bridge, n)
        async with asyncio.timeout(10):
            async for message in device.messages:
                persisted.append(msgspec.json.decode(bytes(message.payload), type=Persisted))  # type: ignore[arg-type]
                if len(persisted) == 3:
                    break
        await asyncio.sleep(0.3)  # the state merge follows the replies
        inserted = bridge.stats.inserted_rows

    reported = [[(r.boot, r.first, r.last) for r in reply.ranges] for reply in persisted]
    assert reported == [[(1, 7, 7)], [(2, 7, 7)], [(1, 7, 7)]]
    assert inserted == 2
    with psycopg.connect(bridge_settings.database.url) as conn:
        stored = conn.execute("SELECT boot, seq, ts, fuel FROM telemetry WHERE device_id = %s ORDER BY boot", (DEVICE,))
        assert stored.fetchall() == [(1, 7, ts, 10.0), (2, 7, ts, 20.0)]
        # Rolled up once each: the resend added nothing; the last fix of the instant is the newer boot's.
        rollup = conn.execute(
            "SELECT samples, fuel_n, fuel_sum, pos_n, pos_boot, lat FROM telemetry_1m WHERE device_id = %s", (DEVICE,)
        ).fetchall()
        assert rollup == [(2, 2, 30.0, 2, 2, 52.0)]
        # The durable last-known state (written off the acknowledgement path, at the latest at stop).
        kept = conn.execute("SELECT field, boot, seq FROM device_state WHERE device_id = %s ORDER BY field", (DEVICE,))
        assert kept.fetchall() == [("m.fuel", 2, 7), ("pos", 2, 7)]
    client = aioredis.Redis.from_url(bridge_settings.redis.url)
    try:
        state = state_from_fields(DEVICE, await client.hgetall(state_key(DEVICE)))  # type: ignore[misc]
    finally:
        await client.aclose()
    fuel = state.metrics["fuel"]
    assert (fuel.value, fuel.boot, fuel.seq) == (20.0, 2, 7)
