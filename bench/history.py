"""History read benchmark: "24 h of one device in 1-minute buckets", p50 and p99, on a large table.

Starts its own PostgreSQL under a temporary folder (or uses `--database-url`), loads generated history
with bench/history_data.py (COPY straight into `telemetry`, rollups filled), then asks the API's own
service code (`api.telemetry.services.fetch_buckets`, through a connection pool, without HTTP) for the
24 hours before the end of the data in 1-minute buckets, each time for a random device. The same query
answered from the raw rows is timed too, for comparison. Prints a JSON summary and writes it to
bench/results/history-<time>.json.

    .venv/bin/python bench/history.py --readings 20000000 --devices 2000

`measure` is importable (bench/api.py calls it against a loaded database).

    .venv/bin/python bench/history.py --sink-cost

instead times only the database side of the bridge's write, per batch of 2,000 one-sample messages of
1,000 devices (mix A of bench/ingest.py): the plain `INSERT … ON CONFLICT DO NOTHING` from the staging
table against the same insert with the rollup upserts in one statement, alternating, on two databases
of one server. End to end the bridge's Python process is the limit, so bench/ingest.py measures what
this costs in messages per second; this measures what it costs the database.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import random
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
from psycopg_pool import AsyncConnectionPool

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from history_data import COLUMNS, TYPES, load, progress, table_bytes  # noqa: E402 - bench/history_data.py, beside this script

from api.telemetry.query import BucketQuery, parse_history  # noqa: E402
from api.telemetry.services import fetch_buckets  # noqa: E402
from bridge.decode import TELEMETRY_COLUMNS  # noqa: E402
from bridge.statestore import UPSERT_STATE  # noqa: E402
from models.migrate import migrate  # noqa: E402
from models.partitions import maintain  # noqa: E402
from models.rollups import insert_and_roll_up  # noqa: E402
from stack.postgres import start_postgres  # noqa: E402

WINDOW = timedelta(hours=24)


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def summary_ms(values: list[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(values, 0.50) * 1000, 2),
        "p99_ms": round(percentile(values, 0.99) * 1000, 2),
        "mean_ms": round(statistics.fmean(values) * 1000, 2),
    }


async def _time_queries(url: str, queries: list[BucketQuery]) -> tuple[list[float], int]:
    latencies = []
    buckets = 0
    async with AsyncConnectionPool(url, min_size=1, max_size=2, kwargs={"autocommit": True}, open=False) as pool:
        await pool.wait()
        for query in queries:
            started = time.perf_counter()
            answer = await fetch_buckets(pool, query)
            latencies.append(time.perf_counter() - started)
            buckets += len(answer.buckets)
    return latencies, buckets


def measure(
    url: str, devices: list[str], end: datetime, *, requests: int = 500, raw_requests: int = 30, seed: int = 1
) -> dict[str, Any]:
    """Time `requests` bucket queries (24 h before `end`, 1 min) of random `devices`, and some from raw rows."""
    rng = random.Random(seed)

    def query(device: str) -> BucketQuery:
        parsed = parse_history(
            device,
            start=(end - WINDOW).isoformat(),
            end=end.isoformat(),
            metric=None,
            limit=None,
            cursor=None,
            bucket="1m",
            points=None,
            now=end,
        )
        assert isinstance(parsed, BucketQuery), parsed
        return parsed

    rollup_queries = [query(rng.choice(devices)) for _ in range(requests)]
    raw_queries = [replace(query(rng.choice(devices)), source=None) for _ in range(raw_requests)]
    progress(f"timing {requests} queries from the rollups, {raw_requests} from the raw rows")
    rollup, buckets = asyncio.run(_time_queries(url, rollup_queries))
    raw, raw_buckets = asyncio.run(_time_queries(url, raw_queries))
    return {
        "query": "24 h of one device in 1-minute buckets (all metrics and the last fix per bucket)",
        "from_rollups": {"requests": requests, "buckets_per_answer": round(buckets / requests), **summary_ms(rollup)},
        "from_raw_rows": {
            "requests": raw_requests,
            "buckets_per_answer": round(raw_buckets / raw_requests),
            **summary_ms(raw),
        },
    }


SINK_BATCH_ROWS = 2000
SINK_DEVICES = 1000


def _sink_batch(cur: psycopg.Cursor[Any], batch: int, start: datetime) -> None:
    """Stage one batch as the bridge does (binary COPY into a temporary LIKE-telemetry table)."""
    with cur.copy(f"COPY telemetry_stage ({', '.join(COLUMNS)}) FROM STDIN (FORMAT BINARY)") as copy:
        copy.set_types(list(TYPES))
        for n in range(SINK_BATCH_ROWS):
            seq = batch * SINK_BATCH_ROWS + n
            ts = start + timedelta(milliseconds=100 * (seq // SINK_DEVICES))
            # COLUMNS order: device_id, ts, received_at, seq, lat, lon, odometer, speed, heading, fuel, engine_temp
            copy.write_row((f"bench-{n % SINK_DEVICES:05d}", ts, ts, seq, 52.0, 4.0, 1e5 + seq, 50.0, 90.0, 60.0, 85.0))


def _state_rows(batch: int, start: datetime) -> tuple[list[Any], ...]:
    """The `device_state` upsert's arrays for one staged batch: per device its newest sample's 4 fields."""
    columns: tuple[list[Any], ...] = ([], [], [], [], [], [])
    last = {n % SINK_DEVICES: batch * SINK_BATCH_ROWS + n for n in range(SINK_BATCH_ROWS)}
    for device, seq in sorted(last.items()):
        ts = start + timedelta(milliseconds=100 * (seq // SINK_DEVICES))
        values = {
            "m.engine_temp": "85.0",
            "m.fuel": "60.0",
            "m.odometer": json.dumps(1e5 + seq),
            "pos": '{"lat":52.0,"lon":4.0,"alt":null,"speed":50.0,"heading":90.0,"accuracy":null}',
        }
        for name, value in values.items():
            for column, item in zip(columns, (f"bench-{device:05d}", name, ts, 0, seq, value), strict=True):
                column.append(item)
    return columns


def sink_cost(base: Path, batches: int) -> dict[str, Any]:
    """Milliseconds of database time per batch: the plain insert, insert-and-roll-up, and both with the
    `device_state` upsert of the same transaction (what the bridge runs since migration 0012)."""
    postgres = start_postgres(base / "pg")
    variants = ("plain", "rollups", "state")
    try:
        with psycopg.connect(postgres.url, autocommit=True) as admin:
            for name in variants:
                admin.execute(f"CREATE DATABASE {name}")
        urls = {name: postgres.url.rsplit("/", 1)[0] + "/" + name for name in variants}
        names = ", ".join(TELEMETRY_COLUMNS)
        statements = {
            "plain": f"INSERT INTO telemetry ({names}) SELECT {names} FROM telemetry_stage ON CONFLICT DO NOTHING",
            "rollups": insert_and_roll_up(TELEMETRY_COLUMNS, "telemetry_stage"),
            "state": insert_and_roll_up(TELEMETRY_COLUMNS, "telemetry_stage"),
        }
        conns = {}
        for name, url in urls.items():
            conn = psycopg.connect(url, autocommit=True)
            migrate(conn)
            maintain(conn, now=datetime.now(UTC))
            conn.autocommit = False
            conn.execute(
                "INSERT INTO devices (id) SELECT 'bench-' || lpad(n::text, 5, '0') FROM generate_series(0, %s) AS n",
                (SINK_DEVICES - 1,),
            )
            conn.execute("CREATE TEMP TABLE telemetry_stage (LIKE telemetry INCLUDING DEFAULTS) ON COMMIT DELETE ROWS")
            conn.commit()
            conns[name] = conn
        start = datetime.now(UTC) - timedelta(hours=2)
        times: dict[str, list[float]] = {name: [] for name in variants}
        progress(f"timing {batches} batches of {SINK_BATCH_ROWS} rows each way")
        for batch in range(batches):
            for name, conn in conns.items():
                with conn.cursor() as cur:
                    _sink_batch(cur, batch, start)
                    state = _state_rows(batch, start) if name == "state" else None
                    started = time.perf_counter()
                    cur.execute(statements[name])
                    if state is not None:
                        cur.execute(UPSERT_STATE, state)
                    conn.commit()
                    times[name].append(time.perf_counter() - started)
        for conn in conns.values():
            conn.close()
        return {
            "batch_rows": SINK_BATCH_ROWS,
            "devices": SINK_DEVICES,
            "batches": batches,
            "insert_only": summary_ms(times["plain"]),
            "insert_and_roll_up": summary_ms(times["rollups"]),
            "insert_roll_up_and_device_state": summary_ms(times["state"]),
        }
    finally:
        postgres.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--readings", type=int, default=10_000_000, help="readings to load (4 per sample)")
    parser.add_argument("--devices", type=int, default=1000)
    parser.add_argument("--hours", type=float, default=26.0, help="span of the generated history")
    parser.add_argument("--requests", type=int, default=500)
    parser.add_argument("--raw-requests", type=int, default=30)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--max-load-seconds", type=float, default=None, help="stop loading (whole devices) after this")
    parser.add_argument("--keep", action="store_true", help="leave the PostgreSQL folder in place (printed)")
    parser.add_argument(
        "--sink-cost",
        action="store_true",
        help="only time the bridge's insert: plain, with rollups, with rollups and device_state",
    )
    parser.add_argument("--batches", type=int, default=300, help="batches timed by --sink-cost")
    args = parser.parse_args()

    base = Path(tempfile.mkdtemp(prefix="fb-history-"))
    base.chmod(0o755)
    if args.sink_cost:
        try:
            figures = {"benchmark": "history-sink-cost", "at": datetime.now(UTC).isoformat()}
            figures |= sink_cost(base, args.batches)
            print(json.dumps(figures, indent=2))
            out = ROOT / "bench" / "results" / f"history-sink-cost-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
            out.write_text(json.dumps(figures, indent=2) + "\n")
        finally:
            shutil.rmtree(base, ignore_errors=True)
        return 0
    postgres = start_postgres(base / "pg")
    try:
        with psycopg.connect(postgres.url, autocommit=True) as conn:
            migrate(conn)
            maintain(conn, now=datetime.now(UTC))
        report = load(
            postgres.url,
            readings=args.readings,
            devices=args.devices,
            hours=args.hours,
            seed=args.seed,
            max_seconds=args.max_load_seconds,
        )
        progress(f"loaded {report.rows} rows ({report.readings} readings) in {report.seconds:.0f} s")
        with psycopg.connect(postgres.url) as conn:
            sizes = {t: table_bytes(conn, t) for t in ("telemetry", "telemetry_1m", "telemetry_1h")}
            rollup_rows = {
                t: conn.execute(f"SELECT count(*) FROM {t}").fetchone() for t in ("telemetry_1m", "telemetry_1h")
            }
        figures = measure(
            postgres.url,
            report.devices,
            report.end,
            requests=args.requests,
            raw_requests=args.raw_requests,
            seed=args.seed,
        )
        result = {
            "benchmark": "history",
            "at": datetime.now(UTC).isoformat(),
            "machine": {"cpus": os.cpu_count(), "python": platform.python_version()},
            "data": {
                "devices": len(report.devices),
                "hours": args.hours,
                "rows": report.rows,
                "readings": report.readings,
                "readings_per_sample": 4,
                "load_seconds": round(report.seconds),
                "load_readings_per_s": round(report.readings / report.seconds),
                "bytes_on_disk": sizes,
                "bytes_per_reading": round(sizes["telemetry"] / report.readings, 1),
                "rollup_rows": {t: r[0] if r else 0 for t, r in rollup_rows.items()},
            },
            **figures,
        }
        print(json.dumps(result, indent=2))
        out = ROOT / "bench" / "results" / f"history-{datetime.now(UTC):%Y%m%dT%H%M%S}.json"
        out.write_text(json.dumps(result, indent=2) + "\n")
        progress(f"wrote {out.relative_to(ROOT)}")
    finally:
        postgres.stop()
        if args.keep:
            progress(f"kept {base}")
        else:
            shutil.rmtree(base, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
