"""Command round trip through the real stack, beside the bare MQTT round trip on the same broker and devices.

A fleet of `--devices` simulated trucks (`python -m firmware_sim`, one process, reporting every 5 s) is
connected to the stack (Mosquitto, `python -m bridge`, `python -m api` with its broker account). Then:

* baseline — `ping` commands published straight on `fleet/v1/{id}/cmd` by a bare MQTT client, each timed
  until that client sees the device's `succeeded` on `cmd/ack`: the broker and the device alone;
* fleetbridge — `POST /api/v1/devices/{id}/commands` `ping`, each timed from the request until a live
  WebSocket client (subscribed to every device) receives its `succeeded` transition: the API stores and
  sends it, the device answers, the bridge records the answer (ack after COMMIT), the API reads the
  transition and pushes it.

Both send `--commands` pings to random devices, `--concurrency` at a time. Prints p50/p99 of each and
their ratio, and writes bench/results/commands-<time>.json.

    .venv/bin/python bench/commands.py                   # 1,000 devices, 2,000 commands
    .venv/bin/python bench/commands.py --devices 200 --commands 500
"""

from __future__ import annotations

import argparse
import asyncio
import json
import random
import subprocess
import sys
import threading
import time
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import msgspec
import paho.mqtt.client as mqtt
import psycopg
from paho.mqtt.enums import CallbackAPIVersion
from websockets.asyncio.client import connect

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.servers import bench_stack, new_results, progress, service_env, write_results  # noqa: E402
from models.commands import CommandAck, CommandMessage  # noqa: E402

BRIDGE_ID = "commands-bench-bridge"
JWT_SECRET = "bench-commands-secret-0123456789-0123456789"
OPEN_TIMEOUT_S = 60
PREFIX = "cmdb-"
_ACK = msgspec.json.Decoder(CommandAck)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def summary(values_ms: list[float]) -> dict[str, float]:
    return {
        "count": len(values_ms),
        "p50_ms": round(percentile(values_ms, 0.50), 2),
        "p99_ms": round(percentile(values_ms, 0.99), 2),
        "max_ms": round(max(values_ms), 2),
    }


def device_id(n: int) -> str:
    return f"{PREFIX}{n:04d}"


def start_fleet(mqtt_url: str, devices: int, procs: int, logs: Path) -> list[subprocess.Popen[bytes]]:
    """The trucks in `procs` processes (two threads per device: a few hundred per process at most)."""
    children = []
    share = -(-devices // procs)
    for n, first in enumerate(range(1, devices + 1, share)):
        count = min(share, devices + 1 - first)
        argv = [sys.executable, "-m", "firmware_sim", "--url", mqtt_url, "--devices", str(count)]
        argv += ["--first-index", str(first), "--rate", "0.2", "--prefix", PREFIX, "--quiet"]
        argv += ["--connect-timeout", "60"]
        with (logs / f"fleet-{n}.log").open("wb") as log:
            children.append(subprocess.Popen(argv, cwd=ROOT, env=service_env({}), stdout=log, stderr=subprocess.STDOUT))
    return children


def wait_online(database_url: str, devices: int, fleet: list[subprocess.Popen[bytes]]) -> None:
    deadline = time.monotonic() + 120
    with psycopg.connect(database_url, autocommit=True) as conn:
        while True:
            row = conn.execute(
                "SELECT count(*) FROM devices WHERE presence = 'online' AND id LIKE %s", (PREFIX + "%",)
            ).fetchone()
            online = row[0] if row else 0
            if online >= devices:
                return
            if any(p.poll() is not None for p in fleet) or time.monotonic() > deadline:
                raise RuntimeError(f"only {online} of {devices} devices came online")
            time.sleep(0.5)


def baseline(mqtt_url: str, devices: int, commands: int, concurrency: int) -> list[float]:
    """Bare MQTT: publish a ping on a device's `cmd`, wait for its `succeeded` on `cmd/ack`."""
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(
        CallbackAPIVersion.VERSION2, client_id=f"cmd-baseline-{uuid.uuid4().hex[:6]}", protocol=mqtt.MQTTv5
    )
    started: dict[str, float] = {}
    latencies: list[float] = []
    done = threading.Condition()

    def on_message(_client: Any, _userdata: Any, message: mqtt.MQTTMessage) -> None:
        ack = _ACK.decode(message.payload)
        if ack.status == "succeeded":
            with done:
                t0 = started.pop(ack.id, None)
                if t0 is not None:
                    latencies.append((time.perf_counter() - t0) * 1000)
                    done.notify_all()

    client.on_message = on_message
    client.connect(host, int(port), clean_start=True)
    client.subscribe("fleet/v1/+/cmd/ack", qos=1)
    client.loop_start()
    time.sleep(0.5)
    rng = random.Random(1)
    try:
        for _ in range(commands):
            with done:
                while len(started) >= concurrency:
                    if not done.wait(10):
                        raise RuntimeError("a baseline ping went unanswered for 10 s")
            command_id = str(uuid.uuid4())
            expires = datetime.now(UTC) + timedelta(minutes=5)
            payload = msgspec.json.encode(CommandMessage(id=command_id, name="ping", expires_at=expires))
            with done:
                started[command_id] = time.perf_counter()
            client.publish(f"fleet/v1/{device_id(rng.randrange(devices) + 1)}/cmd", payload, qos=1)
        with done:
            while started:
                if not done.wait(10):
                    raise RuntimeError("a baseline ping went unanswered for 10 s")
    finally:
        client.loop_stop()
        client.disconnect()
    return latencies


async def through_the_api(
    api_url: str, token: str, devices: int, commands: int, concurrency: int
) -> tuple[list[float], list[float]]:
    """POST pings; the time of each request, and from the request to its `succeeded` on a live WebSocket."""
    ws_url = api_url.replace("http://", "ws://") + f"/api/v1/live?token={token}"
    # A `succeeded` can come before the POST's answer does: kept here until its request looks for it.
    early: dict[str, float] = {}
    waiting: dict[str, asyncio.Future[float]] = {}
    posts: list[float] = []
    round_trips: list[float] = []
    rng = random.Random(2)
    async with (
        connect(ws_url, max_size=2**24, open_timeout=30) as ws,
        httpx.AsyncClient(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as http,
    ):
        await ws.send(json.dumps({"action": "subscribe", "devices": ["*"]}))
        while json.loads(await ws.recv())["type"] != "subscribed":
            pass

        async def reader() -> None:
            while True:
                message = json.loads(await ws.recv())
                if message["type"] == "command" and message["state"] == "succeeded":
                    command_id = message["command"]["id"]
                    future = waiting.get(command_id)
                    if future is None:
                        early[command_id] = time.perf_counter()
                    elif not future.done():
                        future.set_result(time.perf_counter())

        reading = asyncio.create_task(reader())
        gate = asyncio.Semaphore(concurrency)

        async def one() -> None:
            async with gate:
                target = device_id(rng.randrange(devices) + 1)
                t0 = time.perf_counter()
                response = await http.post(f"/api/v1/devices/{target}/commands", json={"name": "ping"})
                posts.append((time.perf_counter() - t0) * 1000)
                if response.status_code != 201:
                    raise RuntimeError(f"POST answered {response.status_code}: {response.text}")
                command_id = response.json()["id"]
                if command_id in early:
                    t1 = early.pop(command_id)
                else:
                    future: asyncio.Future[float] = asyncio.get_running_loop().create_future()
                    waiting[command_id] = future
                    t1 = await asyncio.wait_for(future, 30)
                round_trips.append((t1 - t0) * 1000)

        try:
            await asyncio.gather(*(one() for _ in range(commands)))
        finally:
            reading.cancel()
    return posts, round_trips


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--commands", type=int, default=2000)
    parser.add_argument("--concurrency", type=int, default=10)
    parser.add_argument("--fleet-procs", type=int, default=4, help="simulator processes the devices are spread over")
    args = parser.parse_args()

    results = new_results(devices=args.devices, commands=args.commands, concurrency=args.concurrency)
    with bench_stack("fb-cmd-bench-", bridge_id=BRIDGE_ID, jwt_secret=JWT_SECRET, api_on_broker=True) as stack:
        urls = stack.urls
        progress(f"starting {args.devices} simulated trucks and waiting until all are online")
        fleet = start_fleet(urls["mqtt"], args.devices, args.fleet_procs, stack.base)
        stack.children.extend(fleet)
        wait_online(urls["database"], args.devices, fleet)

        progress(f"baseline: {args.commands} pings over bare MQTT, {args.concurrency} at a time")
        results["baseline_mqtt"] = summary(baseline(urls["mqtt"], args.devices, args.commands, args.concurrency))
        print(f"baseline (bare MQTT ping → succeeded): {json.dumps(results['baseline_mqtt'])}", flush=True)

        progress(f"fleetbridge: {args.commands} POSTed pings, {args.concurrency} at a time, watched live")
        posts, round_trips = asyncio.run(
            through_the_api(stack.api_url, stack.token, args.devices, args.commands, args.concurrency)
        )
        results["post"] = summary(posts)
        results["round_trip"] = summary(round_trips)
        print(f"POST /commands: {json.dumps(results['post'])}", flush=True)
        print(f"POST → succeeded on the live WebSocket: {json.dumps(results['round_trip'])}", flush=True)
        ratio = {k: round(results["round_trip"][k] / results["baseline_mqtt"][k], 1) for k in ("p50_ms", "p99_ms")}
        results["ratio_to_baseline"] = ratio
        print(f"ratio to the bare MQTT round trip: p50 {ratio['p50_ms']}x, p99 {ratio['p99_ms']}x", flush=True)
    write_results("commands", results)
    return 0


if __name__ == "__main__":
    sys.exit(main())
