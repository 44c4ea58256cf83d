"""Bulk history for benchmarks: generated truck readings COPY-loaded straight into `telemetry`, with the
time-bucket rollups filled from exactly the rows loaded.

Nothing goes through MQTT or the bridge: this builds a large table in minutes, not hours. Each sample is
a moving truck's position (with speed and heading), fuel, engine temperature and odometer: 4 readings
(a position counts as one). Samples are evenly spaced over the span, per device, each device with its
own random walk. Devices are loaded a group at a time: one binary COPY and COMMIT per group, then, on a
second connection and while the next group is being copied, the group's rows are summarised into
`telemetry_1m` (one GROUP BY) and `telemetry_1m` into `telemetry_1h`. Device ids carry a run prefix, so
loading again adds new devices and never counts a row twice.

    .venv/bin/python bench/history_data.py --database-url postgresql://… --readings 10000000

It is also imported by bench/history.py, which loads into its own PostgreSQL and then measures.
"""

from __future__ import annotations

import argparse
import math
import random
import sys
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from models.rollups import ROLLUP_1H, ROLLUP_1M, upsert_statement  # noqa: E402

READINGS_PER_SAMPLE = 4
DEVICES_PER_GROUP = 50
COLUMNS = ("device_id", "ts", "received_at", "seq", "lat", "lon", "odometer", "speed", "heading", "fuel", "engine_temp")
TYPES = (
    "text",
    "timestamptz",
    "timestamptz",
    "int8",
    "float8",
    "float8",
    "float8",
    "float4",
    "float4",
    "float4",
    "float4",
)
_COPY = f"COPY telemetry ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)"
_ROLL_UP_MINUTES = upsert_statement(ROLLUP_1M, "(SELECT * FROM telemetry WHERE device_id = ANY(%(devices)s)) AS loaded")
_ROLL_UP_HOURS = upsert_statement(
    ROLLUP_1H, "(SELECT * FROM telemetry_1m WHERE device_id = ANY(%(devices)s)) AS loaded", from_rollup=True
)


@dataclass(frozen=True, slots=True)
class LoadReport:
    """What one load put into the database, and how long it took."""

    devices: list[str]
    rows: int
    readings: int
    start: datetime
    end: datetime
    seconds: float


def progress(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", file=sys.stderr, flush=True)


def _copy_group(
    conn: psycopg.Connection[tuple[object, ...]],
    devices: list[str],
    samples: int,
    start: datetime,
    step: timedelta,
    seed: int,
) -> int:
    rows = 0
    with conn.cursor() as cur, cur.copy(_COPY) as copy:
        copy.set_types(list(TYPES))
        for device in devices:
            rng = random.Random(f"{seed}:{device}")
            lat, lon = rng.uniform(47, 55), rng.uniform(5, 15)
            heading = rng.uniform(0, 360)
            fuel, odometer = rng.uniform(40, 100), rng.uniform(10_000, 500_000)
            ts = start
            for seq in range(samples):
                speed = max(0.0, 60 + 30 * math.sin(seq / 500) + rng.gauss(0, 5))
                heading = (heading + rng.gauss(0, 3)) % 360
                km = speed * step.total_seconds() / 3600
                lat += km / 111.0 * math.cos(math.radians(heading))
                lon += km / 70.0 * math.sin(math.radians(heading))
                odometer += km
                fuel = fuel - km * 0.003 if fuel > 5 else 95.0  # refuelled when nearly empty
                copy.write_row(
                    (
                        device,
                        ts,
                        ts,
                        seq,
                        max(-90.0, min(90.0, lat)),
                        (lon + 180) % 360 - 180,
                        odometer,
                        speed,
                        heading,
                        fuel,
                        85 + rng.gauss(0, 3),
                    )
                )
                ts += step
            rows += samples
    conn.commit()
    return rows


def _roll_up(url: str, devices: list[str]) -> None:
    with psycopg.connect(url) as conn:
        conn.execute(_ROLL_UP_MINUTES, {"devices": devices})
        conn.execute(_ROLL_UP_HOURS, {"devices": devices})


def load(
    url: str,
    *,
    readings: int,
    devices: int,
    hours: float,
    seed: int = 1,
    end: datetime | None = None,
    max_seconds: float | None = None,
) -> LoadReport:
    """COPY `readings` readings (4 per sample) of `devices` devices over `hours` ending at `end`, and roll them up.

    With `max_seconds`, loading stops after the first group that ends past it: the report then names
    only the devices loaded. The database must be migrated, with partitions for the span (`models.partitions.maintain`); rows
    outside them land in the default partitions, which works but is slower to read.
    """
    samples = max(1, readings // READINGS_PER_SAMPLE // devices)
    end = end or datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=1)
    span = timedelta(hours=hours)
    start = end - span
    step = span / samples
    run = f"{seed}-{int(time.time()) % 100000}"
    names = [f"hist-{run}-{n:05d}" for n in range(devices)]
    progress(
        f"loading {devices} devices × {samples} samples ({samples * devices * READINGS_PER_SAMPLE} readings), "
        f"one every {step.total_seconds():.2f} s over {hours} h"
    )
    started = time.perf_counter()
    rows = 0
    pending: list[Future[None]] = []
    with psycopg.connect(url) as conn, ThreadPoolExecutor(max_workers=1) as rollups:
        for first in range(0, devices, DEVICES_PER_GROUP):
            group = names[first : first + DEVICES_PER_GROUP]
            rows += _copy_group(conn, group, samples, start, step, seed)
            pending.append(rollups.submit(_roll_up, url, group))
            done = [f for f in pending if f.done()]
            for future in done:
                future.result()
                pending.remove(future)
            elapsed = time.perf_counter() - started
            loaded = first + len(group)
            if max_seconds is not None and elapsed > max_seconds and loaded < devices:
                progress(f"time is up after {loaded} of {devices} devices")
                names = names[:loaded]
                break
            progress(
                f"{rows} rows ({rows * READINGS_PER_SAMPLE} readings) in {elapsed:.0f} s, {rows / elapsed:,.0f} rows/s"
            )
        for future in pending:
            future.result()
    seconds = time.perf_counter() - started
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("ANALYZE telemetry")
        conn.execute("ANALYZE telemetry_1m")
        conn.execute("ANALYZE telemetry_1h")
    return LoadReport(names, rows, rows * READINGS_PER_SAMPLE, start, end, seconds)


def table_bytes(conn: psycopg.Connection[tuple[object, ...]], table: str) -> int:
    """On-disk size of a partitioned table: every partition with its indexes and TOAST."""
    row = conn.execute(
        "SELECT coalesce(sum(pg_total_relation_size(relid)), 0) FROM pg_partition_tree(%s)", (table,)
    ).fetchone()
    return int(row[0]) if row else 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--database-url", required=True, help="a migrated database with partitions for the span")
    parser.add_argument("--readings", type=int, default=10_000_000)
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=26.0)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    report = load(args.database_url, readings=args.readings, devices=args.devices, hours=args.hours, seed=args.seed)
    with psycopg.connect(args.database_url) as conn:
        sizes = {t: table_bytes(conn, t) for t in ("telemetry", "telemetry_1m", "telemetry_1h")}
    print(f"{report.rows} rows, {report.readings} readings in {report.seconds:.0f} s; bytes on disk: {sizes}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
