"""SIGKILL the bridge while publishing continues and >= 1,000 received messages are uncommitted.

Every sample the broker acknowledged to the publisher must end up in PostgreSQL exactly once: the
killed bridge never acknowledged what it had not committed, so the broker keeps it in the bridge's
persistent session and redelivers it to the restarted instance.
"""

from __future__ import annotations

import asyncio
import contextlib
import signal
import subprocess
from collections.abc import Callable
from datetime import UTC, datetime

import aiomqtt
import msgspec
import psycopg
import pytest

from config import Settings
from tests.integration.bridge.conftest import bridge_env, bridge_stats

pytestmark = pytest.mark.integration

DEVICES = 20
SAMPLES_PER_DEVICE = 400
UNCOMMITTED_AT_KILL = 1000


async def publish_fleet(url: str, acked: list[tuple[str, int]], pace_s: float) -> None:
    host, port = url.removeprefix("mqtt://").split(":")
    start = datetime.now(UTC)
    async with aiomqtt.Client(
        host, int(port), protocol=aiomqtt.ProtocolVersion.V5, max_inflight_messages=200
    ) as client:
        for seq in range(SAMPLES_PER_DEVICE):
            ts = start.timestamp() - SAMPLES_PER_DEVICE + seq
            pending = []
            for n in range(DEVICES):
                device = f"kill-{n:02d}"
                payload = msgspec.json.encode(
                    {
                        "seq": seq,
                        "ts": datetime.fromtimestamp(ts, UTC).isoformat(),
                        "pos": {"lat": 50 + n / 10, "lon": 5.0},
                        "metrics": {"fuel": 50},
                    }
                )
                pending.append(client.publish(f"fleet/v1/{device}/telemetry", payload, qos=1))
            await asyncio.gather(*pending)  # returns once the broker has PUBACKed each one
            acked.extend((f"kill-{n:02d}", seq) for n in range(DEVICES))
            await asyncio.sleep(pace_s)


async def wait_for(predicate: Callable[[], object], what: str, limit_s: float) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        result = predicate()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        if loop.time() > deadline:
            raise AssertionError(f"timed out after {limit_s} s waiting for {what}")
        await asyncio.sleep(0.05)


async def test_sigkill_with_uncommitted_messages_loses_and_duplicates_nothing(
    bridge_settings: Settings, bridge_process: Callable[[dict[str, str]], subprocess.Popen[bytes]]
) -> None:
    client_id = bridge_settings.mqtt.client_id
    # Long batches: the first instance holds thousands of received, unacknowledged messages.
    first = bridge_process(
        bridge_env(
            bridge_settings,
            FLEETBRIDGE_MQTT_RECEIVE_MAXIMUM="6000",
            FLEETBRIDGE_BRIDGE_BATCH_MAX_MESSAGES="6000",
            FLEETBRIDGE_BRIDGE_BATCH_MAX_AGE_MS="120000",
        )
    )

    async def first_connected() -> bool:
        stats = await bridge_stats(bridge_settings.redis.url, client_id)
        return stats.get("pid") == str(first.pid) and stats.get("connects") == "1"

    await wait_for(first_connected, "the first bridge to connect", 20)
    acked: list[tuple[str, int]] = []
    publisher = asyncio.create_task(publish_fleet(bridge_settings.mqtt.url, acked, pace_s=0.01))

    held = {"inflight": 0}

    async def enough_uncommitted() -> bool:
        stats = await bridge_stats(bridge_settings.redis.url, client_id)
        held["inflight"] = int(stats.get("inflight", "0"))
        assert stats.get("committed_messages") == "0"
        return held["inflight"] >= UNCOMMITTED_AT_KILL

    await wait_for(enough_uncommitted, f"{UNCOMMITTED_AT_KILL} uncommitted messages", 60)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    assert not publisher.done(), "publishing must continue across the kill"

    second = bridge_process(bridge_env(bridge_settings))

    async def second_resumed_session() -> bool:
        stats = await bridge_stats(bridge_settings.redis.url, client_id)
        return stats.get("pid") == str(second.pid) and stats.get("connects") == "1"

    await wait_for(second_resumed_session, "the restarted bridge to connect", 20)
    stats = await bridge_stats(bridge_settings.redis.url, client_id)
    assert stats["session_present"] == "1", "the broker must have kept the bridge's session"

    await asyncio.wait_for(publisher, timeout=120)
    expected = DEVICES * SAMPLES_PER_DEVICE
    assert len(acked) == expected

    def stored() -> int:
        with psycopg.connect(bridge_settings.database.url) as conn:
            row = conn.execute("SELECT count(*) FROM telemetry WHERE device_id LIKE 'kill-%'").fetchone()
            return int(row[0]) if row else 0

    with contextlib.suppress(AssertionError):  # on a timeout, the accounting below says what is missing
        await wait_for(lambda: stored() >= expected, f"{expected} stored samples", 60)
    second.send_signal(signal.SIGTERM)
    assert second.wait(timeout=30) == 0

    with psycopg.connect(bridge_settings.database.url) as conn:
        rows = conn.execute("SELECT device_id, seq, count(*) FROM telemetry GROUP BY device_id, seq").fetchall()
    counts = {(device, seq): n for device, seq, n in rows}
    lost = set(acked) - set(counts)
    duplicated = {key: n for key, n in counts.items() if n > 1}
    unexpected = set(counts) - set(acked)
    print(
        f"killed with {held['inflight']} uncommitted; stored {len(counts)} of {len(acked)}; "
        f"lost {len(lost)}, duplicated {len(duplicated)}"
    )
    assert held["inflight"] >= UNCOMMITTED_AT_KILL
    assert (len(lost), len(duplicated), len(unexpected)) == (0, 0, 0)
