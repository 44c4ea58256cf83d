"""The twin end to end with simulated devices: what a device that was away receives, what it reports,
and that the report interval it is sent changes how often it publishes."""

from __future__ import annotations

import asyncio
import itertools
import threading
from datetime import datetime
from typing import Final

import msgspec
import pytest

from config import Settings
from firmware_sim.address import parse_broker_url
from firmware_sim.device import Device
from firmware_sim.fleet import Fleet, FleetOptions
from models.telemetry import Sample
from tests.integration.api.twin_client import add_devices, any_version, api_with_broker, patch, unique, until
from tests.integration.firmware_sim.sim_mqtt import RawSubscriber

pytestmark = pytest.mark.integration

TIMEOUT_S: Final = 10.0
_SAMPLE: Final = msgspec.json.Decoder(Sample)


async def test_a_device_away_during_three_changes_receives_only_the_last_and_reports_it(
    api_settings: Settings, mqtt_url: str, database_url: str
) -> None:
    device_id = unique("tw-sim")
    await add_devices(database_url, (device_id, None))
    path = f"/api/v1/devices/{device_id}/twin"
    device = Device(device_id, parse_broker_url(mqtt_url))
    async with api_with_broker(api_settings, mqtt_url, database_url) as client:
        try:
            device.connect()
            assert await asyncio.to_thread(device.wait_connected, TIMEOUT_S)
            first = (await patch(client, path, {"report_interval_s": 30}, any_version())).json()
            assert await asyncio.to_thread(device.wait_config, first["version"], TIMEOUT_S)
            device.go_offline()
            changes = []
            for interval in (20, 10, 5):
                changed = await patch(
                    client, path, {"report_interval_s": interval, "firmware_channel": "beta"}, any_version()
                )
                changes.append(changed.json())
            device.come_back()
            last = changes[-1]["version"]
            assert await asyncio.to_thread(device.wait_config, last, TIMEOUT_S)
            shown = await until(lambda: client.get(path), lambda r: r.json()["reported_version"] == last)
        finally:
            await asyncio.to_thread(device.close)

    assert [change["published_version"] for change in changes] == [change["version"] for change in changes]
    assert device.config_received() == [first["version"], last], "the device got an intermediate version"
    assert device.report_interval_s == 5
    assert device.config_applied == {"report_interval_s": 5, "firmware_channel": "beta"}
    twin = shown.json()
    assert twin["version"] == twin["reported_version"] == last
    assert twin["reported"] == {"report_interval_s": 5, "firmware_channel": "beta"}
    assert twin["difference"] == []
    assert twin["in_sync"] is True


async def test_the_report_interval_a_device_is_sent_changes_how_often_it_publishes(
    api_settings: Settings, mqtt_url: str, database_url: str
) -> None:
    prefix = unique("tw-rate") + "-"
    options = FleetOptions(devices=1, rate_hz=10.0, prefix=prefix, events=False)
    fleet = Fleet(parse_broker_url(mqtt_url), options)
    device = fleet.devices[0]
    await add_devices(database_url, (device.device_id, None))
    telemetry = RawSubscriber(mqtt_url, [f"fleet/v1/{device.device_id}/telemetry"])
    runner = threading.Thread(target=fleet.run, name="fleet", daemon=True)
    async with api_with_broker(api_settings, mqtt_url, database_url) as client:
        try:
            await asyncio.to_thread(telemetry.wait_subscribed)
            fleet.start()
            assert await asyncio.to_thread(fleet.wait_connected, TIMEOUT_S)
            runner.start()
            assert await asyncio.to_thread(telemetry.wait_for, lambda m: len(m) >= 5, TIMEOUT_S)
            changed = await patch(
                client, f"/api/v1/devices/{device.device_id}/twin", {"report_interval_s": 1}, any_version()
            )
            assert await asyncio.to_thread(device.wait_config, changed.json()["version"], TIMEOUT_S)
            seen = len(telemetry.messages)
            assert await asyncio.to_thread(telemetry.wait_for, lambda m: len(m) >= seen + 3, TIMEOUT_S)
        finally:
            fleet.stop()
            await asyncio.to_thread(runner.join, TIMEOUT_S)
            await asyncio.to_thread(fleet.close)
            telemetry.close()

    times = [_SAMPLE.decode(message.payload).ts for message in telemetry.messages]
    gaps = [(later - earlier).total_seconds() for earlier, later in itertools.pairwise(times)]
    assert all(isinstance(t, datetime) for t in times)
    # Device time is the scheduled time: 0.1 s apart at the fleet's 10 Hz, then 1 s apart as its twin says.
    assert gaps[:4] == pytest.approx([0.1] * 4, abs=1e-3)
    assert gaps[-2:] == pytest.approx([1.0, 1.0], abs=1e-3)
