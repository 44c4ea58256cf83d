"""How fast the rules engine drains the committed feed, beside how fast the bridge's batch commit fills it.

One PostgreSQL (fast mode) holds 1,000 devices, 100 threshold rules (fleet-wide, per kind and per group)
and 1,000 geofences over the trucks' region. The telemetry is written exactly as the bridge writes it
(COPY into the staging table, the INSERT, the feed statement, COMMIT: `bridge/sink.py`, `models/feed.py`),
timed: that is the bridge's commit rate alone, without MQTT or decoding, so an upper bound of what a bridge
can commit. Then `python -m engine` (N instances) starts on the full feed and is timed until the feed is
empty: its samples/s. The ratio of the two is the figure of the issue ("the engine keeps up with at
least twice the bridge's rate"); being against the bridge's ceiling, it understates the margin.

    .venv/bin/python bench/engine.py                      # 1,000 trucks x 60 samples, 1 engine
    .venv/bin/python bench/engine.py --engines 2 --samples 120

What it does not measure: publish → alert on a WebSocket (the whole stack; not built here yet).
"""

from __future__ import annotations

import argparse
import math
import os
import random
import resource
import signal
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg.types.json import Jsonb

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.geofence import LAT0, LON0, make_fences  # noqa: E402
from bench.servers import progress  # noqa: E402
from bridge.decode import TELEMETRY_COLUMNS, TELEMETRY_TYPES  # noqa: E402
from bridge.sink import _COPY_STAGE, _CREATE_STAGE, _INSERT_NEW  # noqa: E402
from models.earth import degrees_lat, degrees_lon  # noqa: E402
from models.feed import FEED_FROM_STAGE  # noqa: E402
from models.migrate import migrate  # noqa: E402
from models.partitions import maintain  # noqa: E402
from stack.postgres import start_postgres  # noqa: E402

KINDS = ("truck", "van", "tanker", "reefer")
GROUPS = ("north", "south", "east", "west", "depot")
# (metric, op, threshold, low, high): limits the trucks below cross now and then, so alerts are raised
# and cleared, and limits they never reach, so most rules only evaluate.
RULE_SHAPES: tuple[tuple[str, str, float | None, float | None, float | None], ...] = (
    ("engine_temp", ">", 104.0, None, None),
    ("engine_temp", ">", 140.0, None, None),
    ("fuel", "<", 12.0, None, None),
    ("speed", ">", 88.0, None, None),
    ("battery", "outside", None, 11.0, 15.0),
    ("temperature", ">", 60.0, None, None),
)


def seed(conn: psycopg.Connection[Any], devices: int, rules: int, fences: int, region_deg: float) -> None:
    rng = random.Random(7)
    with conn.cursor() as cur:
        cur.executemany(
            "INSERT INTO devices (id, kind, group_name) VALUES (%s, %s, %s)",
            [(f"truck-{d:05d}", KINDS[d % len(KINDS)], GROUPS[d % len(GROUPS)]) for d in range(devices)],
        )
        created = datetime.now(UTC) - timedelta(days=2)  # rules evaluate samples from their creation on
        params = []
        for r in range(rules):
            metric, op, threshold, low, high = RULE_SHAPES[r % len(RULE_SHAPES)]
            scope = r % 3  # fleet-wide, per kind, per group
            params.append(
                (
                    f"rule {r}",
                    metric,
                    op,
                    threshold,
                    low,
                    high,
                    rng.choice((0, 10, 30)),
                    rng.choice((0, 30)),
                    "major",
                    KINDS[r % len(KINDS)] if scope == 1 else None,
                    GROUPS[r % len(GROUPS)] if scope == 2 else None,
                    created,
                )
            )
        cur.executemany(
            "INSERT INTO alert_rules (name, metric, op, threshold, low, high, for_s, clear_for_s, severity, kind,"
            " group_name, created_at) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)",
            params,
        )
        documents = make_fences(fences, region_deg, rng)
        cur.executemany(
            "INSERT INTO geofences (name, geometry, properties, group_name) VALUES (%s, %s, %s, %s)",
            [
                (
                    f"fence {n}",
                    Jsonb(doc.get("geometry", doc)),
                    Jsonb(doc.get("properties", {})),
                    GROUPS[n % len(GROUPS)] if n % 2 else None,
                )
                for n, doc in enumerate(documents)
            ],
        )


def telemetry(devices: int, samples: int, region_deg: float, start: datetime) -> list[list[tuple[object, ...]]]:
    """Per round, one sample of every device (a fix every 5 s): trucks wandering the region."""
    rng = random.Random(11)
    index = {name: i for i, name in enumerate(TELEMETRY_COLUMNS)}
    state = [
        [LON0 + rng.uniform(0, region_deg), LAT0 + rng.uniform(0, region_deg), rng.uniform(0, 2 * math.pi)]
        for _ in range(devices)
    ]
    rounds: list[list[tuple[object, ...]]] = []
    for i in range(samples):
        ts = start + timedelta(seconds=5 * i)
        batch = []
        for d in range(devices):
            lon, lat, heading = state[d]
            speed = max(0.0, min(95.0, 45 + 35 * math.sin((i + d) / 40) + rng.gauss(0, 3)))
            heading += rng.gauss(0, 0.2)
            step = speed / 3.6 * 5
            lon = min(LON0 + region_deg, max(LON0, lon + degrees_lon(step * math.sin(heading), lat)))
            lat = min(LAT0 + region_deg, max(LAT0, lat + degrees_lat(step * math.cos(heading))))
            state[d] = [lon, lat, heading]
            row: list[object] = [None] * len(TELEMETRY_COLUMNS)
            row[index["ts"]], row[index["received_at"]] = ts, datetime.now(UTC)
            row[index["seq"]], row[index["boot"]], row[index["device_id"]] = i, 0, f"truck-{d:05d}"
            row[index["lat"]], row[index["lon"]], row[index["speed"]] = lat, lon, speed
            # A normal fleet: engines at 86-98 °C; one truck in a hundred overheats now and then.
            overheating = 20 * max(0.0, math.sin((i + d) / 15)) if d % 100 == 0 else 0.0
            row[index["engine_temp"]] = 92 + 6 * math.sin((i + 3 * d) / 25) + overheating + rng.gauss(0, 0.5)
            row[index["fuel"]] = max(0.0, 60 - 0.05 * i - (d % 50))
            row[index["battery"]] = 13.2 + rng.gauss(0, 0.3)
            row[index["odometer"]] = 1000 + i * 0.07
            batch.append(tuple(row))
        rounds.append(batch)
    return rounds


def commit(conn: psycopg.Connection[Any], rows: list[tuple[object, ...]]) -> float:
    """One batch transaction as the bridge writes it; its seconds."""
    started = time.perf_counter()
    with conn.transaction(), conn.cursor() as cur:
        with cur.copy(_COPY_STAGE) as copy:
            copy.set_types(list(TELEMETRY_TYPES))
            for row in rows:
                copy.write_row(row)
        cur.execute(_INSERT_NEW)
        cur.execute(FEED_FROM_STAGE)
    return time.perf_counter() - started


def drain(url: str, engines: int, base: Path, total_feed: int, profile: Path | None) -> tuple[float, float]:
    """Start the engines on the full feed; seconds until it is empty, and the CPU seconds the engines used
    (user and system, start-up included: less sensitive than the wall time to other work on the machine)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("FLEETBRIDGE_")}
    env |= {"FLEETBRIDGE_DATABASE_URL": url, "FLEETBRIDGE_ENGINE_POLL_INTERVAL_MS": "50"}
    children = []
    started = time.perf_counter()
    for n in range(engines):
        log = (base / f"engine-{n}.log").open("wb")
        children.append(
            subprocess.Popen(
                [
                    sys.executable,
                    *(["-m", "cProfile", "-o", str(profile)] if profile and n == 0 else []),
                    "-m",
                    "engine",
                ],
                env=env | {"FLEETBRIDGE_ENGINE_INSTANCE": f"bench-{n}"},
                stdout=log,
                stderr=subprocess.STDOUT,
                cwd=ROOT,
            )
        )
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            last_report = 0.0
            while True:
                row = conn.execute("SELECT count(*) FROM engine_feed").fetchone()
                left = row[0] if row else 0
                now = time.perf_counter()
                if left == 0:
                    drained = now - started
                    break
                if now - last_report > 5:
                    progress(f"feed rows left {left:,} of {total_feed:,} after {now - started:.0f} s")
                    last_report = now
                time.sleep(0.05)
    finally:
        before = resource.getrusage(resource.RUSAGE_CHILDREN)
        for child in children:
            child.send_signal(signal.SIGINT)  # a clean stop, so that cProfile writes its statistics
        for child in children:
            child.wait(timeout=30)
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
    return drained, after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--samples", type=int, default=60, help="samples per device (one every 5 s)")
    parser.add_argument("--per-batch", type=int, default=2000, help="samples per bridge batch")
    parser.add_argument("--rules", type=int, default=100)
    parser.add_argument("--fences", type=int, default=1000)
    parser.add_argument("--region-deg", type=float, default=1.0)
    parser.add_argument("--engines", type=int, default=1)
    parser.add_argument("--profile", type=Path, help="write the first engine's cProfile statistics here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="fb-bench-engine-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        progress("starting PostgreSQL")
        server = start_postgres(base / "pg", fast=True)
        try:
            with psycopg.connect(server.url, autocommit=True) as conn:
                migrate(conn)
                maintain(conn, now=datetime.now(UTC), ahead_days=1, retention_days=30)
                seed(conn, args.devices, args.rules, args.fences, args.region_deg)
            start = datetime.now(UTC) - timedelta(seconds=5 * args.samples + 60)
            rows = [row for batch in telemetry(args.devices, args.samples, args.region_deg, start) for row in batch]
            progress(f"committing {len(rows):,} samples as the bridge does, {args.per_batch} a batch")
            spent = 0.0
            with psycopg.connect(server.url) as conn:
                conn.execute(_CREATE_STAGE)
                conn.commit()
                for at in range(0, len(rows), args.per_batch):
                    spent += commit(conn, rows[at : at + args.per_batch])
            with psycopg.connect(server.url, autocommit=True) as conn:
                feed = conn.execute("SELECT count(*) FROM engine_feed").fetchone()
            total_feed = feed[0] if feed else 0
            progress(f"{total_feed:,} feed rows; starting {args.engines} engine(s)")
            drained, engine_cpu = drain(server.url, args.engines, base, total_feed, args.profile)
            with psycopg.connect(server.url, autocommit=True) as conn:
                counts = conn.execute(
                    "SELECT (SELECT count(*) FROM alerts), (SELECT count(*) FROM geofence_events),"
                    " (SELECT count(*) FROM trips), (SELECT count(*) FROM stops)"
                ).fetchone()
        finally:
            server.stop()
    bridge_rate = len(rows) / spent
    engine_rate = len(rows) / drained
    alerts, fence_events, trips, stops = counts or (0, 0, 0, 0)
    print(
        f"{args.devices:,} devices, {args.samples} samples each ({len(rows):,}), {args.rules} rules,"
        f" {args.fences:,} geofences over {args.region_deg:g} deg, {args.engines} engine(s)"
    )
    print(f"bridge batch commit (COPY, INSERT, feed, COMMIT; no MQTT): {bridge_rate:,.0f} samples/s")
    print(f"engine drain of the same feed: {engine_rate:,.0f} samples/s in {drained:.1f} s")
    print(f"engine CPU (user + system, start-up included): {engine_cpu:.1f} s")
    print(f"engine / bridge commit: {engine_rate / bridge_rate:.2f}x (goal: >= 2x the bridge's committed rate)")
    print(f"derived: {alerts} alerts, {fence_events} geofence events, {trips} trips, {stops} stops")


if __name__ == "__main__":
    main()
