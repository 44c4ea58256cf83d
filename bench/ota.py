"""Firmware update of a fleet through the real stack, beside the bare downloads of the same image.

`--devices` simulated trucks (`python -m firmware_sim`, in `--fleet-procs` processes) in one group; a
`--image-mib` MiB image is uploaded, then:

* baseline — the image downloaded `--devices` times straight from the API's image route with a device's
  link, `--concurrency` at a time, by one client: what serving the bytes costs;
* fleetbridge — a one-wave rollout to the group: each truck is sent its update command, downloads the
  image (range requests), checks its SHA-256, reboots and reports `running`; timed from the rollout's
  start until every update succeeded (and per device, from the start to its `succeeded`).

Prints both, writes bench/results/ota-<time>.json.

    .venv/bin/python bench/ota.py                     # 100 devices, 5 MiB
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.commands import BRIDGE_ID, JWT_SECRET, PREFIX, start_fleet, summary, wait_online  # noqa: E402
from bench.servers import bench_stack, new_results, progress, write_results  # noqa: E402

GROUP = "ota-bench"


async def bare_downloads(url: str, count: int, concurrency: int, size: int) -> tuple[float, list[float]]:
    """`count` downloads of `url`, `concurrency` at a time: the wall time and each one's time (ms)."""
    gate = asyncio.Semaphore(concurrency)
    times: list[float] = []

    async def one(client: httpx.AsyncClient) -> None:
        async with gate:
            t0 = time.perf_counter()
            response = await client.get(url)
            if response.status_code != 200 or len(response.content) != size:
                raise RuntimeError(f"download answered {response.status_code} with {len(response.content)} bytes")
            times.append((time.perf_counter() - t0) * 1000)

    start = time.perf_counter()
    async with httpx.AsyncClient(timeout=120) as client:
        await asyncio.gather(*(one(client) for _ in range(count)))
    return time.perf_counter() - start, times


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--image-mib", type=float, default=5.0)
    parser.add_argument("--concurrency", type=int, default=10, help="bare downloads at a time")
    parser.add_argument("--fleet-procs", type=int, default=2)
    args = parser.parse_args()
    size = int(args.image_mib * 1024 * 1024)
    image = os.urandom(size)
    results = new_results(devices=args.devices, image_bytes=size)
    with bench_stack("fb-ota-bench-", bridge_id=BRIDGE_ID, jwt_secret=JWT_SECRET, api_on_broker=True) as stack:
        urls = stack.urls
        http = httpx.Client(base_url=stack.api_url, headers={"Authorization": f"Bearer {stack.token}"}, timeout=120)
        progress(f"starting {args.devices} simulated trucks")
        fleet = start_fleet(urls["mqtt"], args.devices, args.fleet_procs, stack.base)
        stack.children.extend(fleet)
        wait_online(urls["database"], args.devices, fleet)
        with psycopg.connect(urls["database"], autocommit=True) as conn:
            conn.execute("INSERT INTO device_groups (name) VALUES (%s)", (GROUP,))
            conn.execute("UPDATE devices SET group_name = %s WHERE id LIKE %s", (GROUP, PREFIX + "%"))
            # A device that never connects: its update stays queued and is cancelled; only its link is
            # wanted, for the bare downloads.
            conn.execute("INSERT INTO devices (id, kind) VALUES ('ota-bench-link', 'truck')")
        params = {"kind": "truck", "version": "2.0.0", "sha256": hashlib.sha256(image).hexdigest()}
        made = http.post("/api/v1/firmware", params=params, content=image)
        made.raise_for_status()
        image_id = made.json()["id"]

        progress(f"baseline: {args.devices} bare downloads of {args.image_mib} MiB, {args.concurrency} at a time")
        link = http.post("/api/v1/devices/ota-bench-link/firmware-update", json={"image_id": image_id}).json()
        http.post(f"/api/v1/commands/{link['id']}/cancel")
        wall, times = asyncio.run(bare_downloads(link["args"]["url"], args.devices, args.concurrency, size))
        mib_per_s = round(args.devices * size / 2**20 / wall, 1)
        results["baseline_downloads"] = {"wall_s": round(wall, 2), "mib_per_s": mib_per_s} | summary(times)
        print(f"baseline (bare downloads): {json.dumps(results['baseline_downloads'])}", flush=True)

        progress(f"fleetbridge: a one-wave rollout to {args.devices} trucks")
        results["rollout"] = rollout(http, urls["database"], image_id, size)
        print(f"rollout: {json.dumps(results['rollout'])}", flush=True)
        ratio = round(results["rollout"]["wall_s"] / results["baseline_downloads"]["wall_s"], 1)
        results["ratio_to_baseline"] = ratio
        print(f"rollout wall time / bare downloads wall time: {ratio}x", flush=True)
    write_results("ota", results)
    return 0


def rollout(http: httpx.Client, database_url: str, image_id: int, size: int) -> dict[str, Any]:
    """Run a one-wave rollout to the group until it ends; its wall time and per-device times."""
    start = time.perf_counter()
    made = http.post("/api/v1/rollouts", json={"image_id": image_id, "group": GROUP, "first_wave_pct": 100}).json()
    while True:
        state = http.get(f"/api/v1/rollouts/{made['id']}").json()
        if state["state"] != "running":
            break
        time.sleep(0.5)
    wall = time.perf_counter() - start
    with psycopg.connect(database_url) as conn:
        rows = conn.execute(
            "SELECT extract(epoch FROM c.finished_at - r.created_at) * 1000 FROM rollout_devices rd"
            " JOIN commands c ON c.id = rd.command_id JOIN rollouts r ON r.id = rd.rollout_id"
            " WHERE rd.rollout_id = %s AND c.state = 'succeeded'",
            (made["id"],),
        ).fetchall()
        updated = conn.execute(
            "SELECT count(*) FROM devices WHERE firmware_version = '2.0.0' AND id LIKE %s", (PREFIX + "%",)
        ).fetchone()
    per_device = [float(r[0]) for r in rows]
    return {
        "state": state["state"],
        "wall_s": round(wall, 2),
        "updated": updated[0] if updated else 0,
        "mib_per_s": round(len(per_device) * size / 2**20 / wall, 1),
    } | (summary(per_device) if per_device else {})


if __name__ == "__main__":
    sys.exit(main())
