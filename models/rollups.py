"""Time-bucket rollups of telemetry: per device and bucket, mergeable summaries of every typed metric.

Design decisions:

- **Two levels**, `telemetry_1m` and `telemetry_1h` (migration 0007), keyed `(device_id, ts)` where `ts`
  is the bucket's start. On plain PostgreSQL they are tables partitioned by day exactly like `telemetry`
  (same `models.partitions` maintenance and retention); on TimescaleDB they are continuous aggregates
  with the same names and columns, so readers never need to know which.
- **Only mergeable state** is stored: per metric the count, sum, min and max (`fuel_n`, `fuel_sum`,
  `fuel_min`, `fuel_max`), the number of samples, and the last fix. Merging two summaries of one bucket
  is then addition, LEAST, GREATEST and "newer wins"; a coarser bucket is a re-aggregation of finer
  ones; the average is `sum / n`, computed when read.
- **Exact and idempotent on plain PostgreSQL:** the bridge feeds the rollups the rows its INSERT into
  `telemetry` reports as inserted (`RETURNING`, in one statement with the insert, in the same
  transaction). A redelivered sample inserts nothing, so it adds nothing; a late sample is inserted, so
  it is added to its old bucket. Nothing ever recomputes a bucket from scratch.
- **Position is the last fix of the bucket** (by `ts`, then `boot` and `seq`: two fixes of one instant
  from two boots are two samples) and how many fixes there were: a point the vehicle actually passed,
  which an average of a curved route is not. The tables keep the fix's `pos_boot` for that order (step
  0011); readers need only `POSITION_FIELDS`, which the TimescaleDB aggregates have too. Rollup rows
  never tie on `pos_ts` (a fix lies in its bucket), so re-aggregating them needs no boot.
- Not rolled up: metrics without a typed column (`extra`) and the devices' own one-second aggregates
  (`agg`). Sums are `double precision` over `real` values, so an average read from a rollup can differ
  from one computed over raw rows in the last bits (the order of additions differs); counts, minima and
  maxima are identical.

SQL here is built only from the constants of this module (metric names from `models.telemetry`), never
from input.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from models.telemetry import METRIC_COLUMNS, SAMPLE_KEY

ROLLUPS_MIGRATION: Final = 7  # the schema step that creates the rollups (and whose variant says how)
# Buckets are aligned to whole multiples of their width since this instant (UTC midnight): 1 d buckets
# are UTC days. TimescaleDB's time_bucket aligns minutes and hours the same way.
BUCKET_ORIGIN: Final = datetime(2000, 1, 1, tzinfo=UTC)
POSITION_FIELDS: Final = ("pos_n", "pos_ts", "pos_seq", "lat", "lon")
# What the plain tables store besides: the last fix's boot, which orders fixes of one instant.
STORED_POSITION_FIELDS: Final = (*POSITION_FIELDS, "pos_boot")


@dataclass(frozen=True, slots=True)
class Rollup:
    """One rollup table and the width of its buckets."""

    table: str
    width: timedelta


ROLLUP_1M: Final = Rollup("telemetry_1m", timedelta(minutes=1))
ROLLUP_1H: Final = Rollup("telemetry_1h", timedelta(hours=1))
ROLLUPS: Final = (ROLLUP_1M, ROLLUP_1H)  # finest first


def metric_fields(metric: str) -> tuple[str, str, str, str]:
    """The rollup columns of one metric: count, sum, min, max."""
    return (f"{metric}_n", f"{metric}_sum", f"{metric}_min", f"{metric}_max")


ROLLUP_COLUMNS: Final = (
    "device_id",
    "ts",
    "samples",
    *(field for metric in METRIC_COLUMNS for field in metric_fields(metric)),
    *STORED_POSITION_FIELDS,
)
# What an aggregation of raw rows needs from each `telemetry` row.
RAW_INPUT_COLUMNS: Final = ("device_id", "ts", "boot", "seq", "lat", "lon", *METRIC_COLUMNS)


def _last(column: str, *, order: str, present: str) -> str:
    return f"(array_agg({column} ORDER BY {order}) FILTER (WHERE {present} IS NOT NULL))[1]"


def raw_aggregates(
    metrics: Sequence[str] = METRIC_COLUMNS, *, position: bool = True, stored: bool = False
) -> list[str]:
    """SELECT-list items summarising a group of `telemetry` rows, aliased as the rollup columns
    (`stored`: with the last fix's boot, as the plain tables keep it)."""
    items = ["count(*) AS samples"]
    for metric in metrics:
        n, total, low, high = metric_fields(metric)
        items += [
            f"count({metric}) AS {n}",
            # sum(real) is real in PostgreSQL: sum in double precision, and 0 rather than NULL for none.
            f"coalesce(sum({metric}::float8), 0) AS {total}",
            f"min({metric}) AS {low}",
            f"max({metric}) AS {high}",
        ]
    if position:
        order = "ts DESC, boot DESC, seq DESC"
        items += [
            "count(lat) AS pos_n",
            "max(ts) FILTER (WHERE lat IS NOT NULL) AS pos_ts",
            f"{_last('seq', order=order, present='lat')} AS pos_seq",
            f"{_last('lat', order=order, present='lat')} AS lat",
            f"{_last('lon', order=order, present='lat')} AS lon",
        ]
        if stored:
            items.append(f"{_last('boot', order=order, present='lat')} AS pos_boot")
    return items


def rollup_aggregates(
    metrics: Sequence[str] = METRIC_COLUMNS, *, position: bool = True, stored: bool = False
) -> list[str]:
    """SELECT-list items merging a group of rollup rows into one summary, aliased as the rollup columns
    (`stored`: with the last fix's boot, as the plain tables keep it)."""
    items = ["sum(samples) AS samples"]
    for metric in metrics:
        n, total, low, high = metric_fields(metric)
        items += [f"sum({n}) AS {n}", f"sum({total}) AS {total}", f"min({low}) AS {low}", f"max({high}) AS {high}"]
    if position:
        order = "pos_ts DESC, pos_seq DESC"
        items += [
            "sum(pos_n) AS pos_n",
            "max(pos_ts) AS pos_ts",
            f"{_last('pos_seq', order=order, present='pos_ts')} AS pos_seq",
            f"{_last('lat', order=order, present='pos_ts')} AS lat",
            f"{_last('lon', order=order, present='pos_ts')} AS lon",
        ]
        if stored:
            items.append(f"{_last('pos_boot', order=order, present='pos_ts')} AS pos_boot")
    return items


def bucket_expression(width: timedelta, column: str = "ts") -> str:
    """`column` truncated to the start of its bucket of `width` (aligned to `BUCKET_ORIGIN`)."""
    seconds = int(width.total_seconds())
    return f"date_bin(interval '{seconds} seconds', {column}, timestamptz '{BUCKET_ORIGIN.isoformat()}')"


def _merge_assignments() -> list[str]:
    # In ON CONFLICT DO UPDATE every expression reads the stored row `r` as it was before this update.
    newer = (
        "EXCLUDED.pos_ts IS NOT NULL AND (r.pos_ts IS NULL"
        " OR (EXCLUDED.pos_ts, EXCLUDED.pos_boot, EXCLUDED.pos_seq) > (r.pos_ts, r.pos_boot, r.pos_seq))"
    )
    items = ["samples = r.samples + EXCLUDED.samples"]
    for metric in METRIC_COLUMNS:
        n, total, low, high = metric_fields(metric)
        items += [
            f"{n} = r.{n} + EXCLUDED.{n}",
            f"{total} = r.{total} + EXCLUDED.{total}",
            # LEAST and GREATEST skip NULLs: a bucket without the metric so far takes the new value.
            f"{low} = LEAST(r.{low}, EXCLUDED.{low})",
            f"{high} = GREATEST(r.{high}, EXCLUDED.{high})",
        ]
    items.append("pos_n = r.pos_n + EXCLUDED.pos_n")
    items += [
        f"{field} = CASE WHEN {newer} THEN EXCLUDED.{field} ELSE r.{field} END" for field in STORED_POSITION_FIELDS[1:]
    ]
    return items


def upsert_statement(rollup: Rollup, source: str, *, from_rollup: bool = False) -> str:
    """Add the rows of `source` (raw `telemetry` rows, or finer rollup rows) into `rollup`'s buckets.

    `source` is a relation name or a parenthesised subquery with an alias. Rows go in key order, so that
    concurrent writers lock the buckets they share in the same order.
    """
    aggregates = rollup_aggregates(stored=True) if from_rollup else raw_aggregates(stored=True)
    return (
        f"INSERT INTO {rollup.table} AS r ({', '.join(ROLLUP_COLUMNS)})"
        f" SELECT device_id, {bucket_expression(rollup.width)} AS ts, {', '.join(aggregates)}"
        f" FROM {source} GROUP BY 1, 2 ORDER BY 1, 2"
        f" ON CONFLICT (device_id, ts) DO UPDATE SET {', '.join(_merge_assignments())}"
    )


def insert_and_roll_up(columns: Sequence[str], stage: str) -> str:
    """One statement: insert `stage`'s new rows into `telemetry`, and add exactly those to every rollup.

    Its single result row is the number of rows inserted. A data-modifying CTE sees the rows its
    INSERT … RETURNING produced and nothing else, so duplicates (already stored, or within `stage`)
    never reach the rollups.
    """
    names = ", ".join(columns)
    parts = [
        f"new AS (INSERT INTO telemetry ({names}) SELECT {names} FROM {stage}"
        f" ON CONFLICT {SAMPLE_KEY} DO NOTHING RETURNING {', '.join(RAW_INPUT_COLUMNS)})"
    ]
    parts += [f"{rollup.table}_added AS ({upsert_statement(rollup, 'new')} RETURNING 1)" for rollup in ROLLUPS]
    return f"WITH {', '.join(parts)} SELECT count(*) FROM new"
