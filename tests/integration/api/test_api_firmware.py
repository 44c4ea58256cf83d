"""Firmware images and over-the-air updates on real servers: uploads checked against their SHA-256, byte
ranges served to the device a link names, and a simulated truck updating through a link that is cut in
the middle of the download — it resumes, checks the hash and restarts into the new version; a damaged
download fails and the device keeps its old version."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading
import time
import uuid
from typing import Any

import httpx
import psycopg
import pytest

from config import Settings
from firmware_sim.device import DeviceOptions
from firmware_sim.fleet import FleetOptions
from stack.netproxy import ProxyThread
from tests.integration.api.test_api_commands import (
    admin_client,
    fleet_running,
    online,
    stack,
    unique_prefix,
    wait_for,
)

pytestmark = pytest.mark.integration

IMAGE_BYTES = 5 * 1024 * 1024


async def upload(http: httpx.AsyncClient, image: bytes, version: str, kind: str = "truck") -> httpx.Response:
    params = {"kind": kind, "version": version, "sha256": hashlib.sha256(image).hexdigest()}
    return await http.post("/api/v1/firmware", params=params, content=image)


async def test_images_are_checked_listed_and_served_in_ranges_to_the_device_a_link_names(
    api_settings: Settings, mqtt_url: str, redis_url: str, database_url: str
) -> None:
    image = os.urandom(300_000)
    async with stack(api_settings, mqtt_url, redis_url, database_url) as api_url:
        http = await admin_client(api_url, database_url)
        wrong = await http.post(
            "/api/v1/firmware", params={"kind": "truck", "version": "2.0.0", "sha256": "0" * 64}, content=image
        )
        assert wrong.status_code == 400
        assert "SHA-256" in wrong.json()["detail"]
        made = await upload(http, image, "2.0.0")
        assert made.status_code == 201, made.text
        described = made.json()
        assert (described["size"], described["sha256"]) == (len(image), hashlib.sha256(image).hexdigest())
        assert (await upload(http, image, "2.0.0")).status_code == 409
        assert [i["version"] for i in (await http.get("/api/v1/firmware", params={"kind": "truck"})).json()] == [
            "2.0.0"
        ]

        device_id = f"{unique_prefix('fw')}0001"
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute(
                "INSERT INTO devices (id, kind) VALUES (%s, 'truck'), (%s, 'pump')", (device_id, device_id + "p")
            )
        pump = await http.post(f"/api/v1/devices/{device_id}p/firmware-update", json={"image_id": described["id"]})
        assert pump.status_code == 400
        assert "'truck' devices" in pump.json()["detail"]
        sent = await http.post(f"/api/v1/devices/{device_id}/firmware-update", json={"image_id": described["id"]})
        assert sent.status_code == 201, sent.text
        command = sent.json()
        assert command["name"] == "update_firmware"
        assert command["state"] == "queued"  # the device is offline
        url = command["args"]["url"]
        assert url.startswith(api_url)

        async with httpx.AsyncClient(timeout=10) as device:  # no credentials: the link is the permission
            whole = await device.get(url)
            assert whole.status_code == 200
            assert whole.content == image
            assert whole.headers["etag"] == f'"{described["sha256"]}"'
            assert whole.headers["accept-ranges"] == "bytes"
            part = await device.get(url, headers={"Range": "bytes=100000-"})
            assert part.status_code == 206
            assert part.headers["content-range"] == f"bytes 100000-{len(image) - 1}/{len(image)}"
            assert part.content == image[100000:]
            tail = await device.get(url, headers={"Range": "bytes=-10"})
            assert tail.content == image[-10:]
            past = await device.get(url, headers={"Range": f"bytes={len(image)}-"})
            assert past.status_code == 416
            assert past.headers["content-range"] == f"bytes */{len(image)}"
            forged = await device.get(url.replace(device_id, "another-truck"))
            assert forged.status_code == 401
            other_image = await device.get(url.replace(f"/firmware/{described['id']}/", "/firmware/999/"))
            assert other_image.status_code == 401

        # A plain command cannot carry a download link: only the firmware route makes one.
        plain = await http.post(
            f"/api/v1/devices/{device_id}/commands", json={"name": "update_firmware", "args": command["args"]}
        )
        assert plain.status_code == 400
        in_use = await http.delete(f"/api/v1/firmware/{described['id']}")
        assert in_use.status_code == 409, "an unfinished update names it"
        await http.aclose()


async def test_an_update_cut_mid_download_resumes_and_restarts_the_truck_into_the_new_version(
    api_settings: Settings, mqtt_url: str, redis_url: str, database_url: str
) -> None:
    image = os.urandom(IMAGE_BYTES)
    prefix = unique_prefix("ota")
    device_id = f"{prefix}0001"
    async with stack(api_settings, mqtt_url, redis_url, database_url) as api_url:
        host, port = api_url.removeprefix("http://").split(":")
        # The device reaches the API through a link that will be cut; slow enough to cut in the middle.
        with ProxyThread(host, int(port), latency_s=0.002) as proxy:
            settings_url = f"http://127.0.0.1:{proxy.port}"
            http = await admin_client(api_url, database_url)
            version = f"2.{uuid.uuid4().hex[:4]}"
            described = (await upload(http, image, version)).json()
            with fleet_running(mqtt_url, FleetOptions(devices=1, prefix=prefix, rate_hz=5.0)) as fleet:
                await online(http, device_id)
                sent = await _update_via(http, api_url, settings_url, device_id, described["id"])
                cut = threading.Thread(target=_cut_midway, args=(proxy, IMAGE_BYTES // 3), daemon=True)
                cut.start()
                done = await wait_for(
                    http, f"/api/v1/commands/{sent['id']}", lambda b: b["state"] in ("succeeded", "failed"), 90
                )
                cut.join(5)
                assert done["state"] == "succeeded", done
                assert done["result"]["version"] == version
                assert fleet.devices[0].firmware_version == version
                assert proxy.stats.cut >= 1, "the download was cut"
                assert proxy.stats.accepted >= 2, "and resumed on a new connection"
                boots = await _boots_stored(database_url, device_id, want=2)
                assert boots == 2, "it restarted into the new version, and its samples go on"
            stages = [t["detail"]["stage"] for t in done["transitions"] if t["state"] == "progress"]
            assert stages[0] == "downloading"
            assert stages[-3:] == ["verifying", "installing", "running"]
            percents = [t["detail"].get("percent") for t in done["transitions"] if t["state"] == "progress"]
            assert max(p for p in percents if p is not None) == 100.0
            async with await psycopg.AsyncConnection.connect(database_url) as conn:
                row = await (
                    await conn.execute("SELECT firmware_version FROM devices WHERE id = %s", (device_id,))
                ).fetchone()
            assert row == (version,)
            await http.aclose()


async def test_a_damaged_download_fails_the_update_and_the_device_keeps_its_version(
    api_settings: Settings, mqtt_url: str, redis_url: str, database_url: str
) -> None:
    image = os.urandom(200_000)
    prefix = unique_prefix("bad-ota")
    device_id = f"{prefix}0001"
    async with stack(api_settings, mqtt_url, redis_url, database_url) as api_url:
        http = await admin_client(api_url, database_url)
        described = (await upload(http, image, f"3.{uuid.uuid4().hex[:4]}")).json()
        options = FleetOptions(devices=1, prefix=prefix, rate_hz=5.0, device=DeviceOptions(corrupt_downloads=True))
        with fleet_running(mqtt_url, options) as fleet:
            await online(http, device_id)
            sent = (
                await http.post(f"/api/v1/devices/{device_id}/firmware-update", json={"image_id": described["id"]})
            ).json()
            done = await wait_for(
                http, f"/api/v1/commands/{sent['id']}", lambda b: b["state"] in ("succeeded", "failed")
            )
            assert done["state"] == "failed"
            assert "SHA-256 mismatch" in done["result"]["reason"]
            assert fleet.devices[0].firmware_version == "1.0.0"
        stages = [t["detail"]["stage"] for t in done["transitions"] if t["state"] == "progress"]
        assert stages[-1] == "failed"
        await http.aclose()


async def _grouped_fleet_online(
    http: httpx.AsyncClient, database_url: str, prefix: str, count: int, group: str
) -> None:
    for n in range(1, count + 1):
        await online(http, f"{prefix}{n:04d}")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("INSERT INTO device_groups (name) VALUES (%s) ON CONFLICT DO NOTHING", (group,))
        await conn.execute("UPDATE devices SET group_name = %s WHERE id LIKE %s", (group, prefix + "%"))


async def test_a_rollout_whose_first_wave_fails_stops_before_the_second(
    api_settings: Settings, mqtt_url: str, redis_url: str, database_url: str
) -> None:
    image = os.urandom(100_000)
    prefix, group = unique_prefix("wave"), f"yard-{uuid.uuid4().hex[:6]}"
    async with stack(api_settings, mqtt_url, redis_url, database_url) as api_url:
        http = await admin_client(api_url, database_url)
        described = (await upload(http, image, f"4.{uuid.uuid4().hex[:4]}")).json()
        options = FleetOptions(devices=4, prefix=prefix, rate_hz=2.0, device=DeviceOptions(corrupt_downloads=True))
        with fleet_running(mqtt_url, options) as fleet:
            await _grouped_fleet_online(http, database_url, prefix, 4, group)
            body = {"image_id": described["id"], "group": group, "first_wave_pct": 25, "failure_threshold_pct": 0}
            made = await http.post("/api/v1/rollouts", json=body)
            assert made.status_code == 201, made.text
            rollout = made.json()
            assert [(w["wave"], w["devices"]) for w in rollout["waves"]] == [(1, 1), (2, 3)]
            ended = await wait_for(http, f"/api/v1/rollouts/{rollout['id']}", lambda b: b["state"] != "running", 60)
            assert ended["state"] == "stopped"
            assert "1 of 1 updates failed" in ended["reason"]
            second = ended["waves"][1]
            assert (second["pending"], second["in_progress"], second["succeeded"], second["failed"]) == (3, 0, 0, 0)
            await asyncio.sleep(1.5)  # several advancing rounds: the second wave stays unsent
            assert sum(len(d.received_commands()) for d in fleet.devices) == 1
            assert {d.firmware_version for d in fleet.devices} == {"1.0.0"}
            again = await http.post(f"/api/v1/rollouts/{rollout['id']}/stop")
            assert again.status_code == 409
        await http.aclose()


async def test_a_rollout_updates_its_group_wave_after_wave(
    api_settings: Settings, mqtt_url: str, redis_url: str, database_url: str
) -> None:
    image = os.urandom(100_000)
    prefix, group = unique_prefix("roll"), f"depot-{uuid.uuid4().hex[:6]}"
    version = f"5.{uuid.uuid4().hex[:4]}"
    async with stack(api_settings, mqtt_url, redis_url, database_url) as api_url:
        http = await admin_client(api_url, database_url)
        described = (await upload(http, image, version)).json()
        with fleet_running(mqtt_url, FleetOptions(devices=3, prefix=prefix, rate_hz=2.0)) as fleet:
            await _grouped_fleet_online(http, database_url, prefix, 3, group)
            body = {"image_id": described["id"], "group": group, "first_wave_pct": 34}
            rollout = (await http.post("/api/v1/rollouts", json=body)).json()
            assert [(w["wave"], w["devices"]) for w in rollout["waves"]] == [(1, 2), (2, 1)]
            ended = await wait_for(http, f"/api/v1/rollouts/{rollout['id']}", lambda b: b["state"] != "running", 90)
            assert ended["state"] == "completed", ended["waves"]
            assert [(w["wave"], w["succeeded"]) for w in ended["waves"]] == [(1, 2), (2, 1)]
            assert {d.firmware_version for d in fleet.devices} == {version}
        await http.aclose()


async def _update_via(
    http: httpx.AsyncClient, api_url: str, device_base: str, device_id: str, image_id: int
) -> dict[str, Any]:
    """Send the update with the link pointing at `device_base` (the proxy) instead of the API itself."""
    async with httpx.AsyncClient(
        base_url=api_url, timeout=10, headers={**http.headers, "Host": device_base.removeprefix("http://")}
    ) as via:
        made = await via.post(f"/api/v1/devices/{device_id}/firmware-update", json={"image_id": image_id})
    assert made.status_code == 201, made.text
    command: dict[str, Any] = made.json()
    assert command["args"]["url"].startswith(device_base)
    return command


async def _boots_stored(database_url: str, device_id: str, *, want: int) -> int:
    deadline = time.monotonic() + 15
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        while True:
            row = await (
                await conn.execute("SELECT count(DISTINCT boot) FROM telemetry WHERE device_id = %s", (device_id,))
            ).fetchone()
            boots = int(row[0]) if row else 0
            if boots >= want or time.monotonic() > deadline:
                return boots
            await asyncio.sleep(0.2)


def _cut_midway(proxy: ProxyThread, after_bytes: int) -> None:
    deadline = time.monotonic() + 60
    while proxy.stats.bytes_down < after_bytes and time.monotonic() < deadline:
        time.sleep(0.01)
    proxy.cut()
