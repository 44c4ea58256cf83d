"""HTTP ingest benchmark: messages/s and request latency of `POST /api/v1/ingest`, committed end to end.

Private Mosquitto, Redis and PostgreSQL; a bridge (`python -m bridge`) and an API (`python -m api`) as
processes of their own; this process is the HTTP client. `--devices` devices each send `--requests`
requests one after the other, all devices at once; a request holds `--lines` NDJSON lines (1: a plain
JSON body) of `--samples` samples each; a sample carries a position and fuel, i.e. 2 readings. Every
request must come back 200 with every sample stored; the rows in PostgreSQL are counted at the end.

    .venv/bin/python bench/http_ingest.py --devices 8 --requests 20 --lines 100
    .venv/bin/python bench/http_ingest.py --devices 8 --requests 200 --lines 1
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from servers import start_servers  # noqa: E402 - bench/servers.py, beside this script

from broker.accounts import DeviceSpec, import_devices  # noqa: E402
from stack.process import free_port  # noqa: E402

READINGS_PER_SAMPLE = 2


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time a process has used so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def body(start_seq: int, lines: int, samples: int, start: datetime) -> bytes:
    out = []
    seq = start_seq
    for _ in range(lines):
        batch = []
        for _ in range(samples):
            ts = (start + timedelta(milliseconds=seq * 10)).isoformat()
            batch.append({"seq": seq, "ts": ts, "pos": {"lat": 52.5, "lon": 13.4}, "metrics": {"fuel": 50.0}})
            seq += 1
        out.append(json.dumps(batch[0] if samples == 1 else {"samples": batch}))
    return "\n".join(out).encode()


async def device_loop(
    client: httpx.AsyncClient, device: str, secret: str, args: argparse.Namespace, latencies: list[float]
) -> int:
    start = datetime.now(UTC) - timedelta(minutes=30)
    content_type = "application/json" if args.lines == 1 else "application/x-ndjson"
    seq = 0
    for _ in range(args.requests):
        payload = body(seq, args.lines, args.samples, start)
        began = time.perf_counter()
        response = await client.post(
            "/api/v1/ingest", content=payload, headers={"Content-Type": content_type}, auth=(device, secret)
        )
        latencies.append(time.perf_counter() - began)
        if response.status_code != 200 or response.json()["stored_samples"] != args.lines * args.samples:
            raise SystemExit(f"{device}: {response.status_code} {response.text[:300]}")
        seq += args.lines * args.samples
    return seq


async def drive(
    api_url: str, credentials: list[tuple[str, str]], args: argparse.Namespace, children: list[subprocess.Popen[bytes]]
) -> tuple[float, list[float], dict[str, float]]:
    latencies: list[float] = []
    async with httpx.AsyncClient(base_url=api_url, timeout=60) as client:
        deadline = time.monotonic() + 30
        while True:
            try:
                ready = await client.get("/readyz")
                if ready.status_code == 200 and ready.json()["checks"].get("mqtt", {}).get("ok"):
                    break
            except httpx.TransportError:
                pass
            if time.monotonic() > deadline:
                raise SystemExit("the API did not become ready")
            await asyncio.sleep(0.1)
        cpu_before = [cpu_seconds(child.pid) for child in children]
        began = time.perf_counter()
        await asyncio.gather(*(device_loop(client, d, s, args, latencies) for d, s in credentials))
        elapsed = time.perf_counter() - began
        # Share of one core each process used while the requests ran (the bridge commits a little later).
        cpu = {
            name: round((cpu_seconds(child.pid) - before) / elapsed, 2)
            for name, child, before in zip(("bridge", "api"), children, cpu_before, strict=True)
        }
        return elapsed, latencies, cpu


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--requests", type=int, default=20, help="per device")
    parser.add_argument("--lines", type=int, default=100, help="messages per request (1: a JSON body)")
    parser.add_argument("--samples", type=int, default=1, help="samples per message")
    args = parser.parse_args()
    started: list = []
    children: list[subprocess.Popen[bytes]] = []
    with tempfile.TemporaryDirectory(prefix="fleet-http-bench-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        try:
            mosquitto, redis_server, postgres = start_servers(base, started)
            with psycopg.connect(postgres.url, autocommit=True) as conn:
                creds = import_devices(conn, [DeviceSpec(f"http-{n:04d}") for n in range(args.devices)])
            port = free_port()
            env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETBRIDGE_")} | {
                "FLEETBRIDGE_MQTT_URL": mosquitto.url,
                "FLEETBRIDGE_MQTT_CLIENT_ID": "bench-bridge",
                "FLEETBRIDGE_REDIS_URL": redis_server.url,
                "FLEETBRIDGE_DATABASE_URL": postgres.url,
                "FLEETBRIDGE_API_MQTT_URL": mosquitto.url,
                "FLEETBRIDGE_API_PORT": str(port),
                "FLEETBRIDGE_API_JWT_SECRET": "bench-secret-0123456789abcdefghijklmnop",
                "FLEETBRIDGE_INGEST_MESSAGES_PER_MINUTE": "10000000",
            }
            for name in ("bridge", "api"):
                log = (base / f"{name}.log").open("wb")
                children.append(
                    subprocess.Popen([sys.executable, "-m", name], env=env, stdout=log, stderr=log, cwd=ROOT)
                )
            progress(f"{args.devices} devices x {args.requests} requests x {args.lines} lines x {args.samples} samples")
            elapsed, latencies, cpu = asyncio.run(
                drive(f"http://127.0.0.1:{port}", [(c.username, c.secret) for c in creds], args, children)
            )
            with psycopg.connect(postgres.url) as conn:
                rows = conn.execute("SELECT count(*) FROM telemetry").fetchone()
            messages = args.devices * args.requests * args.lines
            samples = messages * args.samples
            latencies.sort()
            figures = {
                "devices": args.devices,
                "requests": len(latencies),
                "messages_per_request": args.lines,
                "samples_per_message": args.samples,
                "readings_per_sample": READINGS_PER_SAMPLE,
                "rows_in_postgres": rows[0] if rows else 0,
                "expected_rows": samples,
                "elapsed_s": round(elapsed, 2),
                "requests_per_s": round(len(latencies) / elapsed, 1),
                "messages_per_s": round(messages / elapsed, 1),
                "readings_per_s": round(samples * READINGS_PER_SAMPLE / elapsed, 1),
                "latency_ms_p50": round(statistics.median(latencies) * 1000, 1),
                "latency_ms_p95": round(latencies[int(len(latencies) * 0.95) - 1] * 1000, 1),
                "latency_ms_max": round(latencies[-1] * 1000, 1),
                "cores_used_bridge": cpu["bridge"],
                "cores_used_api": cpu["api"],
                "cpus": os.cpu_count(),
            }
            print(json.dumps(figures, indent=2))
        finally:
            for child in children:
                child.terminate()
            for child in children:
                try:
                    child.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    child.kill()
            for server in reversed(started):
                server.stop()


if __name__ == "__main__":
    main()
