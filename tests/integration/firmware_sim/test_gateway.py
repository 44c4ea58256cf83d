"""A simulated gateway through a real Mosquitto, a real bridge and PostgreSQL: windows stored with their
aggregates under each sensor's own id, and none lost when the gateway's link is cut."""

from __future__ import annotations

import asyncio
import time
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


def _wait_level(gateway: Gateway, name: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if gateway.stats().level == name:
            return True
        time.sleep(0.1)
    return False


def _steady(gateway: Gateway, seconds: float) -> tuple[float, int]:
    """Bytes per second the broker acknowledged over `seconds`, and how many windows are unsent at the end."""
    before = gateway.stats()
    started = time.monotonic()
    time.sleep(seconds)
    after = gateway.stats()
    return (after.acked_bytes - before.acked_bytes) / (time.monotonic() - started), after.unsent


def test_gateway_quality_follows_the_link_it_measures_and_stays_within_it(mqtt_url: str, tmp_path: Path) -> None:
    host, port = broker(mqtt_url)
    site = f"link{uuid.uuid4().hex[:6]}"
    links: dict[str, tuple[float, str]] = {  # phase: (link in bytes/s, level expected)
        "300 kbit/s": (300_000 / 8, "standard"),
        "40 kbit/s": (40_000 / 8, "basic"),
        "back to 300 kbit/s": (300_000 / 8, "standard"),
        "4 kbit/s": (4_000 / 8, "minimal"),
    }
    with ProxyThread(host, port) as proxy:
        # No bridge here: nothing is confirmed, and a long persist timeout keeps resends out of the figures.
        gateway = Gateway(
            parse_broker_url(f"mqtt://127.0.0.1:{proxy.port}"),
            GatewayOptions(site=site, sensors_per_kind=4, persist_timeout_s=600, store_dir=tmp_path),
        )
        gateway.start()
        try:
            assert gateway.wait_connected(10)
            assert _wait_level(gateway, "full", 5), gateway.stats()  # loopback: fast
            for phase, (rate, level) in links.items():
                proxy.set_rate(rate)
                assert _wait_level(gateway, level, 40), (phase, gateway.stats())
                if level in {"standard", "basic"}:
                    sent_per_s, unsent = _steady(gateway, 6)
                    # The level's output fits the link: what the broker acknowledged stays under the
                    # link's rate, and no backlog builds up behind it.
                    assert sent_per_s <= rate, (phase, sent_per_s)
                    assert unsent <= 2 * len(gateway.sensors), (phase, unsent)
            changes = [name for _, name in gateway.stats().level_changes]
        finally:
            gateway.close(timeout_s=1)

    # No level flapped back and forth within a phase; on the way down to 4 kbit/s one train measured while
    # the link changed under it may pass through basic.
    assert changes[:4] == ["full", "standard", "basic", "standard"]
    assert changes[-1] == "minimal"
    assert set(changes[4:-1]) <= {"basic"}
