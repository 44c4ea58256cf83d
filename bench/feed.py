"""What the engine's feed costs the bridge: one batch transaction (COPY to staging, INSERT, COMMIT) with and
without the feed statement (bridge/feed.py), alternated batch by batch on one PostgreSQL so that the
machine's other load falls on both alike. Prints the median commit time of each and the difference.

    .venv/bin/python bench/feed.py --batches 40 --messages 2000 --samples 10 --devices 1000
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bridge.decode import TELEMETRY_COLUMNS, TELEMETRY_TYPES  # noqa: E402
from bridge.sink import _COPY_STAGE, _CREATE_STAGE, _INSERT_NEW  # noqa: E402
from models.feed import FEED_FROM_STAGE  # noqa: E402
from models.migrate import migrate  # noqa: E402
from models.partitions import maintain  # noqa: E402
from stack.postgres import start_postgres  # noqa: E402


def rows(batch: int, messages: int, samples: int, devices: int) -> list[tuple[object, ...]]:
    """`messages` messages of `samples` truck samples each, spread over `devices` devices."""
    start = datetime.now(UTC) - timedelta(hours=2) + timedelta(seconds=batch * samples)
    index = {name: i for i, name in enumerate(TELEMETRY_COLUMNS)}
    out = []
    for m in range(messages):
        device = f"truck-{(batch * messages + m) % devices:05d}"
        for s in range(samples):
            row: list[object] = [None] * len(TELEMETRY_COLUMNS)
            row[index["ts"]] = start + timedelta(milliseconds=s * 100 + m)
            row[index["received_at"]] = datetime.now(UTC)
            row[index["seq"]] = batch * messages * samples + m * samples + s
            row[index["boot"]] = 0
            row[index["device_id"]] = device
            row[index["lat"]], row[index["lon"]] = 52.0, 4.0
            row[index["engine_temp"]], row[index["fuel"]], row[index["odometer"]] = 90.0, 50.0, 1000.0 + s
            out.append(tuple(row))
    return out


def commit_batch(conn: psycopg.Connection[tuple[object, ...]], batch: list[tuple[Any, ...]], feed: str) -> float:
    started = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(_COPY_STAGE) as copy:
            copy.set_types(list(TELEMETRY_TYPES))
            for row in batch:
                copy.write_row(row)
        cur.execute(_INSERT_NEW)
        if feed == "stage":
            cur.execute(FEED_FROM_STAGE)

    return time.perf_counter() - started


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, default=40, help="batches of each kind, alternated")
    parser.add_argument("--messages", type=int, default=2000, help="messages per batch (the bridge's default)")
    parser.add_argument("--samples", type=int, default=10, help="samples per message")
    parser.add_argument("--devices", type=int, default=1000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fb-bench-feed-") as base:
        Path(base).chmod(0o755)
        server = start_postgres(Path(base) / "pg")
        try:
            with psycopg.connect(server.url, autocommit=True) as conn:
                migrate(conn)
                maintain(conn, now=datetime.now(UTC), ahead_days=1, retention_days=30)
            times: dict[str, list[float]] = {"none": [], "stage": []}
            kinds = list(times)
            with psycopg.connect(server.url) as conn:
                conn.execute(_CREATE_STAGE)
                conn.commit()
                for n in range(args.batches * len(kinds)):
                    batch = rows(n, args.messages, args.samples, args.devices)
                    kind = kinds[n % len(kinds)]
                    times[kind].append(commit_batch(conn, batch, feed=kind))
                feed_rows = conn.execute("SELECT count(*) FROM engine_feed").fetchone()
        finally:
            server.stop()
    sample_rows = args.messages * args.samples
    print(f"batch: {args.messages} messages x {args.samples} samples = {sample_rows} rows, {args.devices} devices")
    without = statistics.median(times["none"])
    for kind, spent in times.items():
        median = statistics.median(spent)
        print(
            f"feed {kind:>6}: median commit {median * 1000:.1f} ms ({sample_rows / median:,.0f} rows/s),"
            f" {(median - without) * 1000:+.1f} ms ({(median / without - 1) * 100:+.1f} %) against none"
        )
    print(f"feed rows written: {feed_rows[0] if feed_rows else '?'} ({args.batches} batches)")


if __name__ == "__main__":
    main()
