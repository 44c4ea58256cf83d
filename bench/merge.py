"""State-merge benchmark: the bridge's one Lua call per batch, alone, against a private Redis.

Measures `RedisStateCache.merge` on batches shaped like the ingest bench (DEVICES devices, one sample
each with a position and three metrics), either all newer than the state held (the usual case) or all
late (every field becomes a `correction` entry on the live stream). Figures are printed as fields
merged per second, the median of --rounds runs; compare a checkout before and after a change of
`bridge/merge.lua` by running this script from each, one after the other.

    .venv/bin/python bench/merge.py --batches 200
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import msgspec
import redis.asyncio as aioredis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.cache import RedisStateCache  # noqa: E402
from models.state import encode_field  # noqa: E402
from stack.redis import start_redis  # noqa: E402

DEVICES = 1000
FIELDS = ("pos", "m.fuel", "m.engine_temp", "m.odometer")
T0_MS = 1_764_000_000_000


def batch(n: int, *, late: bool) -> dict[str, dict[str, tuple[tuple[int, int, int], bytes]]]:
    """Batch `n`: every device, one sample; newer than batch n-1, or (late) older than every batch."""
    ts = T0_MS - 1000 * (n + 1) if late else T0_MS + 1000 * n
    seq = n
    values: dict[str, Any] = {"pos": {"lat": 52.5, "lon": 13.4, "speed": 40.0}, "m.fuel": 70.0}
    values |= {"m.engine_temp": 88.0, "m.odometer": 1234.5}
    encoded = {name: encode_field(ts, 0, seq, msgspec.json.encode(values[name])) for name in FIELDS}
    return {f"truck-{d:04d}": {name: ((ts, 0, seq), encoded[name]) for name in FIELDS} for d in range(DEVICES)}


async def run(url: str, batches: int, *, late: bool) -> float:
    client = aioredis.Redis.from_url(url)
    try:
        await client.flushall()
        cache = RedisStateCache(client)
        now = datetime.now(UTC)
        await cache.merge(batch(batches + 1, late=False) if late else batch(0, late=False), seen=(), now=now)
        prepared = [batch(n, late=late) for n in range(1, batches + 1)]
        started = time.perf_counter()
        for updates in prepared:
            await cache.merge(updates, seen=(), now=now)
        elapsed = time.perf_counter() - started
    finally:
        await client.aclose()
    return batches * DEVICES * len(FIELDS) / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--batches", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fb-merge-") as base:
        server = start_redis(Path(base) / "redis")
        try:
            for late in (False, True):
                figures = [asyncio.run(run(server.url, args.batches, late=late)) for _ in range(args.rounds)]
                kind = "late (corrections)" if late else "in order"
                print(f"{kind:>20}: {statistics.median(figures):,.0f} fields/s (median of {args.rounds})")
        finally:
            server.stop()


if __name__ == "__main__":
    main()
