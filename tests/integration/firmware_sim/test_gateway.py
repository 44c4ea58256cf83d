"""A simulated gateway through a real Mosquitto, a real bridge and PostgreSQL: windows stored with their
aggregates under each sensor's own id, and none lost when the gateway's link is cut."""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from pathlib import Path
from typing import Any

import psycopg
import pytest

from config import Settings
from firmware_sim.address import parse_broker_url
from firmware_sim.gateway import Gateway, GatewayOptions
from stack.netproxy import Mode, ProxyThread
from tests.integration.bridge import conftest as bridge_conftest
from tests.integration.bridge.conftest import running_bridge
from tests.integration.bridge.test_pipeline import broker

pytestmark = pytest.mark.integration
bridge_settings = bridge_conftest.bridge_settings  # the bridge tests' fixture, here too


def _stored(database_url: str, sensor_ids: list[str]) -> dict[str, list[tuple[int, int, Any]]]:
    """(boot, seq, agg) of every stored sample of `sensor_ids`, by sensor, in seq order."""
    found: dict[str, list[tuple[int, int, Any]]] = defaultdict(list)
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT device_id, boot, seq, agg FROM telemetry WHERE device_id = ANY(%s) ORDER BY device_id, boot, seq",
            (sensor_ids,),
        ).fetchall()
    for device_id, boot, seq, agg in rows:
        found[device_id].append((boot, seq, agg))
    return found


async def test_gateway_windows_are_stored_as_each_sensors_aggregates_and_a_cut_loses_none(
    bridge_settings: Settings, tmp_path: Path
) -> None:
    host, port = broker(bridge_settings.mqtt.url)
    site = f"site{uuid.uuid4().hex[:6]}"
    with ProxyThread(host, port) as proxy:
        gateway = Gateway(
            parse_broker_url(f"mqtt://127.0.0.1:{proxy.port}"),
            GatewayOptions(site=site, store_dir=tmp_path / "store", persist_timeout_s=2.0, reconnect_max_s=1),
        )
        async with running_bridge(bridge_settings):
            gateway.start()
            try:
                assert await asyncio.to_thread(gateway.wait_connected, 10)
                await asyncio.sleep(3)
                # The link goes down for a while: windows keep closing, into the gateway's stores.
                proxy.set_mode(Mode.REFUSE)
                proxy.cut()
                before = gateway.stats()
                await asyncio.sleep(4)
                during = gateway.stats()
                proxy.set_mode(Mode.FORWARD)
                await asyncio.sleep(3)
                gateway.stop_sampling()
                assert await asyncio.to_thread(gateway.wait_persisted, 30), gateway.stats()
                final = gateway.stats()
            finally:
                await asyncio.to_thread(gateway.close)

    assert during.windows > before.windows, "windows were closed while the link was down"
    assert not during.connected
    assert final.connects >= 2
    assert final.dropped == 0
    assert final.refused == 0
    sensors = {s.device_id: s for s in gateway.sensors}
    stored = _stored(bridge_settings.database.url, list(sensors))
    assert sum(len(rows) for rows in stored.values()) == final.windows
    for device_id, rows in stored.items():
        seqs = [seq for _, seq, _ in rows]
        assert seqs == list(range(len(seqs))), f"{device_id}: a window is missing"  # the store's counter, from 0
        kind = sensors[device_id].kind
        for _, _, agg in rows:
            low, high, avg, count, std = agg[kind]
            assert low <= avg <= high
            assert std >= 0
            # Full quality: one-second windows of the native rate (the first and last may be partial).
            assert 1 <= count <= max(1, round(sensors[device_id].rate_hz))
    vibration = stored[f"{site}-vibration-1"]
    assert len(vibration) >= 8
    assert max(agg["vibration"][3] for _, _, agg in vibration) == 100  # 100 Hz in a whole second
    assert len(stored[f"{site}-temperature-1"]) >= 8
