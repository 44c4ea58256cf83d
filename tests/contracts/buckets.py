"""The brute-force oracle of time buckets: raw rows summarised in plain Python, one bucket at a time.

Rollups and the bucketed history must equal it. Counts, minima, maxima and the last fix must match
exactly; sums (hence averages) only to rounding, since the database adds in another order.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from models.rollups import BUCKET_ORIGIN
from models.telemetry import METRIC_COLUMNS

# Metrics stored as `real`: psycopg reads them back as the shortest decimal that rounds to the float32,
# but the database sums their exact binary values (in double precision), so the oracle does too.
REAL_METRICS = frozenset(METRIC_COLUMNS) - {"odometer"}


def exact_real(value: float) -> float:
    """The double equal to the float32 that `value` denotes."""
    return float(struct.unpack("f", struct.pack("f", value))[0])


@dataclass
class MetricSummary:
    n: int = 0
    total: float = 0.0
    low: float | None = None
    high: float | None = None


@dataclass
class BucketSummary:
    samples: int = 0
    metrics: dict[str, MetricSummary] = field(default_factory=lambda: {m: MetricSummary() for m in METRIC_COLUMNS})
    fixes: int = 0
    last_fix: tuple[datetime, int, float, float] | None = None  # ts, seq, lat, lon
    last_fix_order: tuple[datetime, int, int] | None = None  # ts, boot, seq: which fix is the last


def bucket_start(ts: datetime, width: timedelta) -> datetime:
    return BUCKET_ORIGIN + ((ts - BUCKET_ORIGIN) // width) * width


def brute_force(rows: Iterable[Mapping[str, Any]], width: timedelta) -> dict[tuple[str, datetime], BucketSummary]:
    """Every (device_id, bucket start) with at least one row, summarised."""
    buckets: dict[tuple[str, datetime], BucketSummary] = {}
    for row in rows:
        summary = buckets.setdefault((row["device_id"], bucket_start(row["ts"], width)), BucketSummary())
        summary.samples += 1
        for metric in METRIC_COLUMNS:
            value = row.get(metric)
            if value is None:
                continue
            m = summary.metrics[metric]
            m.n += 1
            m.total += exact_real(value) if metric in REAL_METRICS else value
            m.low = value if m.low is None else min(m.low, value)
            m.high = value if m.high is None else max(m.high, value)
        if row.get("lat") is not None:
            summary.fixes += 1
            order = (row["ts"], row.get("boot", 0), row["seq"])
            if summary.last_fix_order is None or order > summary.last_fix_order:
                summary.last_fix = (row["ts"], row["seq"], row["lat"], row["lon"])
                summary.last_fix_order = order
    return buckets


def same_sum(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-9, abs_tol=1e-6)
