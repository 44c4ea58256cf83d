"""Fleet-state bench: `GET /api/v1/state` over a registry of `--devices` devices with state and positions.

Private Redis and PostgreSQL servers (and a Mosquitto nobody uses, from bench/servers.py); the registry
and the Redis state (a position, four metrics, quality and presence per device, positions in the GEO
index, spread over Germany) are written directly. The API runs in this process (uvicorn on a free port)
and is called over HTTP by one client, one request at a time. Printed: the median and 95th percentile of
`--requests` requests of each kind, with the items each answer held, and, as the baseline the pipeline
replaces, reading the same states with one HGETALL round trip per device.

    .venv/bin/python bench/fleet_state.py --devices 10000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
import psycopg
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from servers import start_servers  # noqa: E402 - bench/servers.py, beside this script

from api.accounts.roles import Role  # noqa: E402
from api.auth import TokenIssuer, build_auth  # noqa: E402
from api.devices.services import read_states  # noqa: E402
from api.server import running  # noqa: E402
from config import load_settings  # noqa: E402
from models.state import GEO_KEY, encode_field, state_key  # noqa: E402
from stack.process import ServerProcess  # noqa: E402

TS_MS = 1_795_629_924_000
GROUPS = ("north", "south", "east", "west")


async def arrange(database_url: str, redis_url: str, devices: int, seed: int) -> None:
    rng = random.Random(seed)
    ids = [f"truck-{n:06d}" for n in range(devices)]
    with (
        psycopg.connect(database_url, autocommit=True) as conn,
        conn.cursor() as cur,
        cur.copy("COPY devices (id, group_name, kind) FROM STDIN") as copy,
    ):
        for n, device_id in enumerate(ids):
            copy.write_row((device_id, GROUPS[n % len(GROUPS)], "truck" if n % 5 else "van"))
    client = aioredis.Redis.from_url(redis_url)
    try:
        async with client.pipeline(transaction=False) as pipe:
            for device_id in ids:
                lon, lat = rng.uniform(6.0, 15.0), rng.uniform(47.5, 55.0)
                pipe.hset(
                    state_key(device_id),
                    mapping={
                        "pos": encode_field(
                            TS_MS, 0, 1, b'{"lat":%.6f,"lon":%.6f,"speed":50.0,"heading":90.0}' % (lat, lon)
                        ),
                        "m.fuel": encode_field(TS_MS, 0, 1, b"71.5"),
                        "m.engine_temp": encode_field(TS_MS, 0, 1, b"88.0"),
                        "m.odometer": encode_field(TS_MS, 0, 1, b"120345.6"),
                        "m.tire_pressure_fl": encode_field(TS_MS, 0, 1, b"8.1"),
                        "quality": encode_field(TS_MS, 0, 1, b"97"),
                        "presence": encode_field(
                            TS_MS, 0, 0, b'{"state":"online","source":"status","since":"2026-11-25T18:05:29Z"}'
                        ),
                    },
                )
                pipe.geoadd(GEO_KEY, (lon, lat, device_id))
            await pipe.execute()
    finally:
        await client.aclose()


async def timed_pages(http: httpx.AsyncClient, params: dict[str, str]) -> tuple[float, int, int]:
    """Seconds to read every page of the query, items read, pages."""
    started = time.perf_counter()
    items = pages = 0
    cursor: str | None = None
    while True:
        response = await http.get("/api/v1/state", params=params | ({"cursor": cursor} if cursor else {}))
        response.raise_for_status()
        body = response.json()
        items += len(body["items"])
        pages += 1
        cursor = body["next_cursor"]
        if cursor is None:
            return time.perf_counter() - started, items, pages


async def naive(redis_url: str, devices: int) -> float:
    client = aioredis.Redis.from_url(redis_url)
    try:
        started = time.perf_counter()
        for n in range(devices):
            await client.hgetall(state_key(f"truck-{n:06d}"))
        return time.perf_counter() - started
    finally:
        await client.aclose()


async def pipelined_only(redis_url: str, devices: int) -> float:
    client = aioredis.Redis.from_url(redis_url)
    try:
        started = time.perf_counter()
        await read_states(client, [f"truck-{n:06d}" for n in range(devices)])
        return time.perf_counter() - started
    finally:
        await client.aclose()


def summary(samples: list[float]) -> str:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, int(0.95 * len(ordered)))]
    return f"median {statistics.median(ordered) * 1000:8.1f} ms   p95 {p95 * 1000:8.1f} ms"


async def run(args: argparse.Namespace, urls: dict[str, str]) -> None:
    await arrange(urls["database"], urls["redis"], args.devices, args.seed)
    settings = load_settings(
        {
            "FLEETBRIDGE_REDIS_URL": urls["redis"],
            "FLEETBRIDGE_DATABASE_URL": urls["database"],
            "FLEETBRIDGE_API_JWT_SECRET": "bench-secret-of-the-fleet-state-bench-0123",
        }
    )
    token = TokenIssuer(build_auth(settings.api)).issue("bench", Role.VIEWER)
    queries = {
        "whole fleet, limit 5000": {"limit": "5000"},
        "whole fleet, limit 1000": {"limit": "1000"},
        "one group (1/4)": {"group": "north", "limit": "5000"},
        "bbox ~1/9 of the area": {"bbox": "6.0,47.5,9.0,50.0", "limit": "5000"},
        "bbox, one group": {"bbox": "6.0,47.5,9.0,50.0", "group": "north", "limit": "5000"},
        "100 named ids": {
            "ids": ",".join(f"truck-{n:06d}" for n in range(0, args.devices, max(1, args.devices // 100)))
        },
    }
    async with (
        running(settings) as url,
        httpx.AsyncClient(base_url=url, timeout=60, headers={"Authorization": f"Bearer {token}"}) as http,
    ):
        await timed_pages(http, {"limit": "10"})  # warm up connections and plans
        print(f"GET /api/v1/state, {args.devices} devices, {args.requests} runs each (all pages of the query):")
        figures = {}
        for name, params in queries.items():
            samples = []
            for _ in range(args.requests):
                seconds, items, pages = await timed_pages(http, params)
                samples.append(seconds)
            figures[name] = samples
            print(f"  {name:28s} {items:6d} states in {pages} page(s)   {summary(samples)}")
    pipelined = [await pipelined_only(urls["redis"], args.devices) for _ in range(3)]
    print(f"  the same {args.devices} states read and decoded by read_states (no HTTP)   {summary(pipelined)}")
    baseline = [await naive(urls["redis"], args.devices) for _ in range(3)]
    print(f"  baseline: {args.devices} states by one HGETALL round trip each (no HTTP)   {summary(baseline)}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--devices", type=int, default=10_000)
    parser.add_argument("--requests", type=int, default=10)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    base = Path(tempfile.mkdtemp(prefix="fb-fleet-state-"))
    base.chmod(0o755)
    servers: list[ServerProcess] = []
    try:
        _, redis_server, postgres = start_servers(base, servers)
        asyncio.run(run(args, {"redis": redis_server.url, "database": postgres.url}))
    finally:
        for server in reversed(servers):
            server.stop()
        shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
