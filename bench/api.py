"""API benchmark: latest-state latency, live delivery latency, and how many WebSocket clients one API
process holds — through the real stack (Mosquitto, bridge, Redis, PostgreSQL, `python -m api`).

Phases (all by default; `--phases` picks):

* `latest` — `GET /api/v1/devices/{id}/state` for random devices, one request at a time over a kept-alive
  connection (p50/p99), then `--concurrency` requests at a time (requests/s);
* `history` — COPY-loads `--history-readings` generated readings (rollups included, bench/history_data.py)
  into the stack's database, then `GET /api/v1/devices/{id}/telemetry?bucket=1m` over 24 h for random
  devices, one request at a time (p50/p99), and the table's size on disk;
* `live` — `--clients` WebSocket clients, each subscribed to `--per-client` devices (each device watched
  by clients × per-client / devices clients), while a publisher process sends telemetry at each rate of
  `--rates` msg/s through MQTT; latency = client receipt − the sample's device time, which the publisher
  sets to the wall clock at publishing (one machine, one clock), p50/p99 per rate;
* `clients` — opens WebSocket clients (each subscribed to `--per-client` devices) in steps up to
  `--max-clients`, printing the API process's RSS at each step and per client.

The client side runs in `--client-procs` processes so that the clients, not the API, are less likely to
be what is measured; on a 2-core machine every figure still shares the CPU with everything else.
Results are printed and written to bench/results/.

    .venv/bin/python bench/api.py
    .venv/bin/python bench/api.py --phases clients --max-clients 10000
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing
import platform
import random
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import paho.mqtt.client as mqtt
import psycopg
import redis
from paho.mqtt.enums import CallbackAPIVersion
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from history_data import load  # noqa: E402 - bench/history_data.py, beside this script
from servers import (  # noqa: E402
    free_port,
    progress,
    rss_mib,
    start_bridge,
    start_servers,
    stop_all,
)
from servers import start_api as start_bench_api  # noqa: E402

from api.accounts.roles import Role  # noqa: E402
from api.auth import TokenIssuer, build_auth  # noqa: E402
from config import load_settings  # noqa: E402

BRIDGE_ID = "api-bench-bridge"
JWT_SECRET = "bench-api-secret-0123456789-0123456789"
OPEN_TIMEOUT_S = 30
OPENING_AT_ONCE = 50
CLIENT_STEPS = (1_000, 2_500, 5_000, 10_000, 20_000)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]


def device_id(n: int) -> str:
    return f"truck-{n:05d}"


def start_api(urls: dict[str, str], logs: Path, port: int) -> subprocess.Popen[bytes]:
    return start_bench_api(urls, logs, port, jwt_secret=JWT_SECRET)


def admin_token() -> str:
    settings = load_settings({"FLEETBRIDGE_API_JWT_SECRET": JWT_SECRET})
    return TokenIssuer(build_auth(settings.api)).issue("bench", Role.ADMIN)


def sample_payload(seq: int, rng: random.Random) -> bytes:
    sample = {
        "seq": seq,
        "ts": datetime.now(UTC).isoformat(timespec="microseconds"),
        "pos": {"lat": 52.0 + rng.random() / 10, "lon": 4.0 + rng.random() / 10, "speed": round(rng.uniform(0, 90), 1)},
        "metrics": {"fuel": round(rng.uniform(5, 100), 1)},
    }
    return json.dumps(sample).encode()


def publish(mqtt_url: str, rate: float, duration_s: float, devices: int, first_seq: int, client_id: str) -> int:
    """Publish at `rate` msg/s (QoS 1, round robin over the devices) for `duration_s`; return the count."""
    host, port = mqtt_url.removeprefix("mqtt://").split(":")
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5)
    client.max_inflight_messages_set(1000)
    client.max_queued_messages_set(0)
    client.connect(host, int(port), clean_start=True)
    client.loop_start()
    rng = random.Random(first_seq)
    sent = 0
    start = time.monotonic()
    try:
        while (elapsed := time.monotonic() - start) < duration_s:
            due = int(elapsed * rate) + 1
            while sent < due:
                device = sent % devices
                seq = first_seq + sent // devices
                client.publish(f"fleet/v1/{device_id(device)}/telemetry", sample_payload(seq, rng), qos=1)
                sent += 1
            time.sleep(0.002)
    finally:
        client.loop_stop()
        client.disconnect()
    return sent


def subscriptions(clients: range, per_client: int, devices: int) -> dict[int, list[str]]:
    return {c: [device_id((c * per_client + j) % devices) for j in range(per_client)] for c in clients}


async def open_client(ws_url: str, devices: list[str]) -> ClientConnection:
    ws = await connect(ws_url, open_timeout=OPEN_TIMEOUT_S, max_queue=None, ping_interval=None)
    await ws.send(json.dumps({"action": "subscribe", "devices": devices}))
    while json.loads(await ws.recv()).get("type") != "subscribed":
        pass
    return ws


async def open_clients(ws_url: str, subs: dict[int, list[str]]) -> list[ClientConnection]:
    """Connect and subscribe every client, OPENING_AT_ONCE at a time (a thousand handshakes at once
    overflow the listen backlog and measure that instead)."""
    gate = asyncio.Semaphore(OPENING_AT_ONCE)

    async def one(devices: list[str]) -> ClientConnection:
        async with gate:
            return await open_client(ws_url, devices)

    return await asyncio.gather(*(one(devices) for devices in subs.values()))


def change_times_ms(message: dict[str, Any]) -> list[float]:
    """Device times (epoch ms) of the changes in a live `state` message."""
    changes = message.get("changes") or {}
    stamps = [changes["position"]["ts"]] if changes.get("position") else []
    stamps += [field["ts"] for field in (changes.get("metrics") or {}).values()]
    return [datetime.fromisoformat(stamp).timestamp() * 1000 for stamp in stamps]


async def receive_for(ws: ClientConnection, until: float, latencies: list[float]) -> int:
    frames = 0
    while (left := until - time.time()) > 0:
        try:
            raw = await asyncio.wait_for(ws.recv(), left)
        except TimeoutError:
            break
        received_ms = time.time() * 1000
        frames += 1
        message = json.loads(raw)
        if message.get("type") == "state":
            stamps = change_times_ms(message)
            if stamps:
                latencies.append(received_ms - max(stamps))
    return frames


async def live_clients(ws_url: str, subs: dict[int, list[str]], start_at: float, until: float) -> dict[str, Any]:
    sockets = await open_clients(ws_url, subs)
    latencies: list[float] = []
    await asyncio.sleep(max(0.0, start_at - time.time()))
    frames = await asyncio.gather(*(receive_for(ws, until, latencies) for ws in sockets))
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)
    return {"latencies": latencies, "frames": sum(frames)}


def live_worker(ws_url: str, subs: dict[int, list[str]], start_at: float, until: float, out: Any) -> None:
    try:
        out.put(asyncio.run(live_clients(ws_url, subs, start_at, until)))
    except Exception as exc:
        out.put({"error": repr(exc), "latencies": [], "frames": 0})


def run_live(
    args: argparse.Namespace, urls: dict[str, str], ws_url: str, rate: float, first_seq: int
) -> dict[str, Any]:
    procs = args.client_procs
    per_proc = [range(p, args.clients, procs) for p in range(procs)]
    ctx = multiprocessing.get_context("spawn")
    out = ctx.Queue()
    # Clients connect first (generously timed), then all measure the same window.
    start_at = time.time() + 5 + args.clients / 500
    until = start_at + args.live_s + 3
    workers = [
        ctx.Process(
            target=live_worker, args=(ws_url, subscriptions(r, args.per_client, args.devices), start_at, until, out)
        )
        for r in per_proc
    ]
    for worker in workers:
        worker.start()
    time.sleep(max(0.0, start_at - time.time()))
    sent = publish(urls["mqtt"], rate, args.live_s, args.devices, first_seq, f"api-bench-pub-{int(rate)}")
    results = [out.get(timeout=args.live_s + 120) for _ in workers]
    for worker in workers:
        worker.join(30)
    errors = [r["error"] for r in results if "error" in r]
    if errors:
        raise RuntimeError(f"live clients failed: {errors}")
    latencies = [lat for r in results for lat in r["latencies"]]
    frames = sum(r["frames"] for r in results)
    return {
        "rate": rate,
        "published": sent,
        "frames": frames,
        "updates_timed": len(latencies),
        "p50_ms": round(percentile(latencies, 0.50), 1) if latencies else None,
        "p99_ms": round(percentile(latencies, 0.99), 1) if latencies else None,
        "max_ms": round(max(latencies), 1) if latencies else None,
    }


def run_history(api_url: str, token: str, database_url: str, args: argparse.Namespace) -> dict[str, Any]:
    """COPY-load `--history-readings` readings (and their rollups) into the stack's database, then time
    "24 h of one device in 1-minute buckets" through the API, one request at a time."""
    progress(f"loading {args.history_readings:,} readings over {args.history_devices} devices")
    report = load(database_url, readings=args.history_readings, devices=args.history_devices, hours=26)
    with psycopg.connect(database_url) as conn:
        size = conn.execute(
            "SELECT sum(pg_total_relation_size(c.oid)) FROM pg_class c JOIN pg_inherits i ON i.inhrelid = c.oid"
            " JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = 'telemetry'"
        ).fetchone()
    params = {"bucket": "1m", "from": (report.end - timedelta(hours=24)).isoformat(), "to": report.end.isoformat()}
    rng = random.Random(11)
    timings: list[float] = []
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as client:
        for _ in range(args.history_requests):
            path = f"/api/v1/devices/{rng.choice(report.devices)}/telemetry"
            started = time.perf_counter()
            response = client.get(path, params=params)
            timings.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()
    return {
        "rows": report.rows,
        "readings": report.readings,
        "telemetry_bytes_on_disk": int(size[0]) if size and size[0] else None,
        "requests": args.history_requests,
        "buckets_per_answer": len(response.json()["buckets"]),
        "p50_ms": round(statistics.median(timings), 2),
        "p99_ms": round(percentile(timings, 0.99), 2),
    }


def run_latest(api_url: str, token: str, devices: int, requests: int, concurrency: int) -> dict[str, Any]:
    rng = random.Random(7)
    headers = {"Authorization": f"Bearer {token}"}
    timings: list[float] = []
    with httpx.Client(base_url=api_url, headers=headers, timeout=10) as client:
        for _ in range(requests):
            path = f"/api/v1/devices/{device_id(rng.randrange(devices))}/state"
            started = time.perf_counter()
            response = client.get(path)
            timings.append((time.perf_counter() - started) * 1000)
            response.raise_for_status()

    async def concurrent() -> float:
        async with httpx.AsyncClient(base_url=api_url, headers=headers, timeout=10) as client:

            async def worker(n: int) -> None:
                local = random.Random(n)
                for _ in range(requests // concurrency):
                    (
                        await client.get(f"/api/v1/devices/{device_id(local.randrange(devices))}/state")
                    ).raise_for_status()

            started = time.perf_counter()
            await asyncio.gather(*(worker(n) for n in range(concurrency)))
            return (requests // concurrency) * concurrency / (time.perf_counter() - started)

    return {
        "requests": requests,
        "p50_ms": round(statistics.median(timings), 2),
        "p99_ms": round(percentile(timings, 0.99), 2),
        "concurrency": concurrency,
        "requests_per_s": round(asyncio.run(concurrent())),
    }


async def hold_clients(ws_url: str, subs: dict[int, list[str]], report: Any, release: Any) -> None:
    sockets: list[ClientConnection] = []
    gate = asyncio.Semaphore(OPENING_AT_ONCE)
    failures: list[str] = []

    async def one(devices: list[str]) -> None:
        async with gate:
            if failures:
                return
            try:
                sockets.append(await open_client(ws_url, devices))
            except (OSError, TimeoutError, ConnectionClosed) as exc:
                failures.append(repr(exc))

    await asyncio.gather(*(one(devices) for devices in subs.values()))
    report.put(("failed" if failures else "open", len(sockets), "; ".join(failures[:1])))
    await asyncio.get_running_loop().run_in_executor(None, release.wait)
    await asyncio.gather(*(ws.close() for ws in sockets), return_exceptions=True)


def hold_worker(ws_url: str, subs: dict[int, list[str]], report: Any, release: Any) -> None:
    asyncio.run(hold_clients(ws_url, subs, report, release))


def run_clients(args: argparse.Namespace, ws_url: str, api_pid: int) -> list[dict[str, Any]]:
    ctx = multiprocessing.get_context("spawn")
    report = ctx.Queue()
    release = ctx.Event()
    workers = []
    rows = []
    held = 0
    base_rss = rss_mib(api_pid) or 0.0
    try:
        for step in (s for s in CLIENT_STEPS if s <= args.max_clients):
            batch = range(held, step)
            chunks = [range(batch.start + p, batch.stop, args.client_procs) for p in range(args.client_procs)]
            started = time.monotonic()
            for chunk in chunks:
                worker = ctx.Process(
                    target=hold_worker,
                    args=(ws_url, subscriptions(chunk, args.per_client, args.devices), report, release),
                )
                worker.start()
                workers.append(worker)
            opened = 0
            failures = []
            for _ in chunks:
                kind, count, detail = report.get(timeout=600)
                opened += count
                if kind == "failed":
                    failures.append(detail)
            held += opened
            time.sleep(2)  # let the API settle (buffers, garbage)
            rss = rss_mib(api_pid) or 0.0
            row = {
                "clients": held,
                "api_rss_mib": round(rss, 1),
                "kib_per_client": round((rss - base_rss) * 1024 / held, 1) if held else None,
                "open_s": round(time.monotonic() - started, 1),
                "failures": failures[:3],
            }
            rows.append(row)
            progress(f"clients: {row}")
            if failures:
                break
    finally:
        release.set()
        for worker in workers:
            worker.join(60)
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--phases", default="latest,live,clients", help="any of latest,history,live,clients")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--requests", type=int, default=5000, help="latest-state requests")
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--clients", type=int, default=1000, help="WebSocket clients in the live phase")
    parser.add_argument("--per-client", type=int, default=10, help="devices each client subscribes to")
    parser.add_argument("--rates", default="1000,10000", help="msg/s in the live phase")
    parser.add_argument("--live-s", type=float, default=20.0, help="publishing time per rate")
    parser.add_argument("--max-clients", type=int, default=10_000)
    parser.add_argument("--client-procs", type=int, default=2)
    parser.add_argument("--history-readings", type=int, default=100_000_000, help="readings loaded for `history`")
    parser.add_argument("--history-devices", type=int, default=1000)
    parser.add_argument("--history-requests", type=int, default=500)
    args = parser.parse_args()
    phases = set(args.phases.split(","))

    base = Path(tempfile.mkdtemp(prefix="fb-api-bench-"))
    base.chmod(0o755)
    servers: list[Any] = []
    children: list[subprocess.Popen[bytes]] = []
    results: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": {"cpus": multiprocessing.cpu_count(), "python": platform.python_version()},
        "devices": args.devices,
    }
    try:
        mosquitto, redis_server, postgres = start_servers(base, servers)
        urls = {"mqtt": mosquitto.url, "redis": redis_server.url, "database": postgres.url}
        stats = redis.Redis.from_url(urls["redis"], decode_responses=True)
        children.append(start_bridge(urls, base, BRIDGE_ID))
        while stats.hget(f"fleet:bridge:{BRIDGE_ID}", "connects") != "1":
            if children[0].poll() is not None:
                raise RuntimeError(f"the bridge exited: see {base / (BRIDGE_ID + '.log')}")
            time.sleep(0.05)
        port = free_port()
        api = start_api(urls, base, port)
        children.append(api)
        api_url = f"http://127.0.0.1:{port}"
        token = admin_token()
        ws_url = f"ws://127.0.0.1:{port}/api/v1/live?token={token}"

        progress(f"seeding the state of {args.devices} devices through MQTT and the bridge")
        seeded = publish(urls["mqtt"], 2000, args.devices / 2000 + 0.5, args.devices, 0, "api-bench-seed")
        first_seq = seeded // args.devices + 1
        while stats.hget(f"fleet:bridge:{BRIDGE_ID}", "committed_messages") != str(seeded):
            time.sleep(0.1)

        if "latest" in phases:
            progress("latest state")
            results["latest"] = run_latest(api_url, token, args.devices, args.requests, args.concurrency)
            print(f"latest state: {json.dumps(results['latest'])}", flush=True)
        if "history" in phases:
            results["history"] = run_history(api_url, token, urls["database"], args)
            print(f"history: {json.dumps(results['history'])}", flush=True)
        if "live" in phases:
            results["live"] = []
            for rate in (float(r) for r in args.rates.split(",")):
                progress(
                    f"live: {args.clients} clients × {args.per_client} devices, {rate:.0f} msg/s for {args.live_s:.0f} s"
                )
                row = run_live(args, urls, ws_url, rate, first_seq)
                first_seq += int(rate * args.live_s) // args.devices + 2
                results["live"].append(row)
                print(f"live: {json.dumps(row)}", flush=True)
        if "clients" in phases:
            progress(f"holding up to {args.max_clients} clients")
            results["clients"] = run_clients(args, ws_url, api.pid)
            for row in results["clients"]:
                print(f"clients: {json.dumps(row)}", flush=True)
    finally:
        stop_all(children, servers)
    stamp = datetime.now(UTC).strftime("%Y%m%dT%H%M%S")
    out = ROOT / "bench" / "results" / f"api-{stamp}.json"
    out.write_text(json.dumps(results, indent=2) + "\n")
    progress(f"results written to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
