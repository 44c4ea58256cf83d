"""Reading telemetry history: keyset-paginated pages, time buckets, downsampled series; seq gaps.

Buckets are one GROUP BY over the coarsest rollup that tiles the bucket width (`telemetry_1h`, then
`telemetry_1m`), or over the raw rows for sub-minute widths; both give the same figures, because the
rollups hold mergeable state (count, sum, min, max, last fix) and are re-aggregated here with
`date_bin`. Column names come only from whitelists (`models.telemetry`, `models.rollups`); every value is
a bound parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from psycopg import sql
from psycopg.rows import dict_row

from api.pool import Pool
from api.telemetry.cursor import TelemetryCursor, encode_cursor
from api.telemetry.downsample import lttb
from api.telemetry.query import POINTS_SOURCE_MAX, POSITION, BadParam, BucketQuery, PointsQuery, TelemetryQuery
from api.telemetry.schemas import (
    AggregateStats,
    BucketedHistory,
    DownsampledHistory,
    GapReport,
    MetricBucket,
    MetricSeries,
    PositionBucket,
    PositionFix,
    SeqGap,
    SeqReset,
    SeriesPoint,
    TelemetryBucket,
    TelemetryItem,
    TelemetryPage,
)
from models.rollups import BUCKET_ORIGIN, POSITION_FIELDS, metric_fields, raw_aggregates, rollup_aggregates
from models.telemetry import METRIC_COLUMNS, SENSOR_BOOT

SAMPLE_COLUMNS: Final = ("ts", "seq", "boot", "received_at", "quality")
POSITION_COLUMNS: Final = ("lat", "lon", "alt", "speed", "heading", "accuracy")
JSON_COLUMNS: Final = ("extra", "agg")
AGGREGATE_FIELDS: Final = (4, 5)  # without or with the standard deviation


def _columns(metric: str | None) -> tuple[str, ...]:
    if metric is None:
        return SAMPLE_COLUMNS + POSITION_COLUMNS + METRIC_COLUMNS + JSON_COLUMNS
    if metric == POSITION:
        return SAMPLE_COLUMNS + POSITION_COLUMNS
    return (*SAMPLE_COLUMNS, metric)


def build_statement(query: TelemetryQuery) -> tuple[sql.Composed, dict[str, Any]]:
    """The SELECT for one page. Column names come only from the whitelists above, values only as params."""
    conditions: list[sql.Composable] = [sql.SQL("device_id = %(device_id)s AND ts >= %(start)s AND ts < %(end)s")]
    if query.metric is not None:
        present = "lat" if query.metric == POSITION else query.metric
        conditions.append(sql.SQL("{} IS NOT NULL").format(sql.Identifier(present)))
    params: dict[str, Any] = {
        "device_id": query.device_id,
        "start": query.start,
        "end": query.end,
        # One row more than asked tells whether another page exists.
        "limit": query.limit + 1,
    }
    if query.after is not None:
        # A row comparison, so the (device_id, ts, boot, seq) primary key serves the seek.
        conditions.append(sql.SQL("(ts, boot, seq) > (%(after_ts)s, %(after_boot)s, %(after_seq)s)"))
        params |= {"after_ts": query.after.ts, "after_boot": query.after.boot, "after_seq": query.after.seq}
    statement = sql.SQL(
        "SELECT {columns} FROM telemetry WHERE {conditions} ORDER BY ts, boot, seq LIMIT %(limit)s"
    ).format(
        columns=sql.SQL(", ").join(sql.Identifier(name) for name in _columns(query.metric)),
        conditions=sql.SQL(" AND ").join(conditions),
    )
    return statement, params


def _position(row: Mapping[str, Any]) -> PositionFix | None:
    if row.get("lat") is None or row.get("lon") is None:
        return None
    return PositionFix(
        lat=row["lat"],
        lon=row["lon"],
        alt=row["alt"],
        speed=row["speed"],
        heading=row["heading"],
        accuracy=row["accuracy"],
    )


def _metrics(row: Mapping[str, Any]) -> dict[str, float]:
    metrics = {name: row[name] for name in METRIC_COLUMNS if row.get(name) is not None}
    extra = row.get("extra")
    if isinstance(extra, dict):
        # Metrics without a typed column; the typed ones win if a name somehow appears in both.
        metrics = {
            # bool is an int subclass, hence `type(...) in` rather than isinstance.
            **{name: float(value) for name, value in extra.items() if type(value) in (int, float)},
            **metrics,
        }
    return metrics


def _aggregates(stored: object) -> dict[str, AggregateStats]:
    # The bridge stores each as [min, max, avg, count] or [min, max, avg, count, std]; anything else is
    # skipped, not fatal.
    if not isinstance(stored, dict):
        return {}
    found: dict[str, AggregateStats] = {}
    for name, values in stored.items():
        if isinstance(values, list) and len(values) in AGGREGATE_FIELDS:
            low, high, mean, count, *std = values
            found[name] = AggregateStats(min=low, max=high, avg=mean, count=count, std=std[0] if std else None)
    return found


def row_to_item(row: Mapping[str, Any]) -> TelemetryItem:
    """One `telemetry` row (any column subset chosen by `_columns`) as an API item."""
    return TelemetryItem(
        ts=row["ts"],
        seq=row["seq"],
        boot=row["boot"],
        received_at=row["received_at"],
        position=_position(row),
        metrics=_metrics(row),
        quality=row["quality"],
        aggregates=_aggregates(row.get("agg")),
    )


async def fetch_page(pool: Pool, query: TelemetryQuery) -> TelemetryPage:
    """One page of a device's telemetry in (ts, boot, seq) order."""
    statement, params = build_statement(query)
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(statement, params)
        rows = await cur.fetchall()
    items = [row_to_item(row) for row in rows[: query.limit]]
    next_cursor = None
    if len(rows) > query.limit:
        last = items[-1]
        next_cursor = encode_cursor(TelemetryCursor(last.ts, last.boot, last.seq))
    return TelemetryPage(items=items, next_cursor=next_cursor)


GAPS_MAX: Final = 1000  # gaps listed, and resets listed, at most
# Each stored sample with the next one of its boot in device-time order. A field-sensor sample's seq is a
# digest, not a counter (models.telemetry.SENSOR_BOOT): no gaps there.
_STEPS: Final = (
    "SELECT boot, ts, seq, lead(seq) OVER w AS next_seq, lead(ts) OVER w AS next_ts FROM telemetry"
    " WHERE device_id = %(device_id)s AND ts >= %(start)s AND ts < %(end)s AND boot < %(sensor_boot)s"
    " WINDOW w AS (PARTITION BY boot ORDER BY ts, seq)"
)
_GAPS = sql.SQL(
    f"SELECT boot, seq + 1 AS first, next_seq - 1 AS last FROM ({_STEPS}) AS s"
    " WHERE next_seq > seq + 1 ORDER BY boot, ts, seq LIMIT %(limit)s"
)
_RESETS = sql.SQL(
    f"SELECT boot, next_ts AS at, seq AS before, next_seq AS after FROM ({_STEPS}) AS s"
    " WHERE next_seq <= seq ORDER BY boot, ts, seq LIMIT %(limit)s"
)
_GAP_TOTALS = sql.SQL(
    "SELECT count(*) AS samples, coalesce(sum(next_seq - seq - 1) FILTER (WHERE next_seq > seq + 1), 0) AS missing"
    f" FROM ({_STEPS}) AS s"
)


async def fetch_gaps(pool: Pool, query: TelemetryQuery) -> GapReport:
    """Missing seq ranges of one device in the query's window, per boot and run; and the seq resets."""
    params = {
        "device_id": query.device_id,
        "start": query.start,
        "end": query.end,
        "limit": GAPS_MAX + 1,
        "sensor_boot": SENSOR_BOOT,
    }
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_GAPS, params)
        rows = await cur.fetchall()
        await cur.execute(_RESETS, params)
        resets = await cur.fetchall()
        await cur.execute(_GAP_TOTALS, params)
        totals = await cur.fetchone()
    assert totals is not None
    gaps = [
        SeqGap(boot=r["boot"], first=r["first"], last=r["last"], missing=r["last"] - r["first"] + 1)
        for r in rows[:GAPS_MAX]
    ]
    return GapReport(
        device_id=query.device_id,
        samples=totals["samples"],
        missing=int(totals["missing"]),
        gaps=gaps,
        resets=[SeqReset(boot=r["boot"], at=r["at"], before=r["before"], after=r["after"]) for r in resets[:GAPS_MAX]],
        truncated=len(rows) > GAPS_MAX or len(resets) > GAPS_MAX,
    )


def _bucket_parts(query: BucketQuery) -> tuple[tuple[str, ...], bool]:
    """The metrics and whether the position are asked for."""
    if query.metric is None:
        return METRIC_COLUMNS, True
    if query.metric == POSITION:
        return (), True
    return (query.metric,), False


def _rollup_rows_as_buckets(query: BucketQuery, metrics: tuple[str, ...], position: bool) -> sql.Composed:
    """Buckets as wide as the rollup's are its rows: no GROUP BY (the most asked-for case, and 20× cheaper)."""
    columns = ["samples", *(field for metric in metrics for field in metric_fields(metric))]
    if position:
        columns += list(POSITION_FIELDS)
    assert query.source is not None
    return sql.SQL(
        "SELECT ts AS bucket, {columns} FROM {table}"
        " WHERE device_id = %(device_id)s AND ts >= %(start)s AND ts < %(end)s ORDER BY ts"
    ).format(columns=sql.SQL(", ").join(map(sql.Identifier, columns)), table=sql.Identifier(query.source.table))


def build_bucket_statement(query: BucketQuery) -> tuple[sql.Composed, dict[str, Any]]:
    """One GROUP BY over the query's source: rollup rows re-aggregated, or raw rows aggregated."""
    metrics, position = _bucket_parts(query)
    params = {
        "width": query.width,
        "origin": BUCKET_ORIGIN,
        "device_id": query.device_id,
        "start": query.start,
        "end": query.end,
    }
    if query.source is not None and query.width == query.source.width:
        return _rollup_rows_as_buckets(query, metrics, position), params
    if query.source is None:
        table, aggregates = "telemetry", raw_aggregates(metrics, position=position)
    else:
        table, aggregates = query.source.table, rollup_aggregates(metrics, position=position)
    statement = sql.SQL(
        "SELECT date_bin(%(width)s, ts, %(origin)s) AS bucket, {aggregates} FROM {table}"
        " WHERE device_id = %(device_id)s AND ts >= %(start)s AND ts < %(end)s GROUP BY 1 ORDER BY 1"
    ).format(
        # The aggregate expressions are built by models.rollups from its constants and the metric whitelist.
        aggregates=sql.SQL(", ".join(aggregates)),
        table=sql.Identifier(table),
    )
    return statement, params


class BucketReader:
    """Turns aggregated rows (plain tuples, columns as `build_bucket_statement` names them) into buckets.

    Column positions are looked up once per answer, not per row: a day of minutes is 1,440 rows of up to
    46 columns, and per-row dict rows and name building cost more than the query itself.
    """

    def __init__(self, columns: Sequence[str], metrics: tuple[str, ...], position: bool) -> None:
        at = {name: i for i, name in enumerate(columns)}
        self._metrics: list[tuple[str, int, int, int, int]] = []
        for metric in metrics:
            n, total, low, high = metric_fields(metric)
            self._metrics.append((metric, at[n], at[total], at[low], at[high]))
        self._bucket, self._samples = at["bucket"], at["samples"]
        self._fix = (at["pos_n"], at["pos_ts"], at["lat"], at["lon"]) if position else None

    def bucket(self, row: Sequence[Any]) -> TelemetryBucket:
        """One row as a bucket: metrics with values, and the last fix."""
        found: dict[str, MetricBucket] = {}
        for metric, n, total, low, high in self._metrics:
            count = int(row[n])
            if count:
                found[metric] = MetricBucket(count=count, min=row[low], max=row[high], avg=row[total] / count)
        fix = None
        if self._fix is not None and row[self._fix[1]] is not None:
            n, ts, lat, lon = self._fix
            fix = PositionBucket(count=int(row[n]), lat=row[lat], lon=row[lon], ts=row[ts])
        return TelemetryBucket(start=row[self._bucket], samples=int(row[self._samples]), metrics=found, position=fix)


async def fetch_buckets(pool: Pool, query: BucketQuery) -> BucketedHistory:
    """A device's history in the query's buckets; with `metric`, only buckets holding that value."""
    statement, params = build_bucket_statement(query)
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.execute(statement, params)
        rows = await cur.fetchall()
        columns = [column.name for column in cur.description or ()]
    metrics, position = _bucket_parts(query)
    reader = BucketReader(columns, metrics, position)
    buckets = [reader.bucket(row) for row in rows]
    if query.metric == POSITION:
        buckets = [b for b in buckets if b.position is not None]
    elif query.metric is not None:
        buckets = [b for b in buckets if b.metrics]
    return BucketedHistory(
        device_id=query.device_id,
        bucket=query.label,
        bucket_s=int(query.width.total_seconds()),
        start=query.start,
        end=query.end,
        source="raw" if query.source is None else f"rollup_{query.source.table.removeprefix('telemetry_')}",
        buckets=buckets,
    )


async def fetch_points(pool: Pool, query: PointsQuery) -> DownsampledHistory | BadParam:
    """Each metric's values in the window, LTTB-downsampled to at most `points`; too many samples: BadParam."""
    metrics = METRIC_COLUMNS if query.metric is None else (query.metric,)
    conditions: list[sql.Composable] = [sql.SQL("device_id = %(device_id)s AND ts >= %(start)s AND ts < %(end)s")]
    if query.metric is not None:
        conditions.append(sql.SQL("{} IS NOT NULL").format(sql.Identifier(query.metric)))
    statement = sql.SQL(
        "SELECT ts, {metrics} FROM telemetry WHERE {conditions} ORDER BY ts, boot, seq LIMIT %(limit)s"
    ).format(
        metrics=sql.SQL(", ").join(sql.Identifier(m) for m in metrics),
        conditions=sql.SQL(" AND ").join(conditions),
    )
    params = {"device_id": query.device_id, "start": query.start, "end": query.end, "limit": POINTS_SOURCE_MAX + 1}
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.execute(statement, params)
        rows = await cur.fetchall()
    if len(rows) > POINTS_SOURCE_MAX:
        return BadParam(
            f"the window holds more than {POINTS_SOURCE_MAX} samples, too many to downsample;"
            " narrow it, or ask for bucket= instead"
        )
    series = []
    for column, metric in enumerate(metrics, start=1):
        values = [(row[0], row[column]) for row in rows if row[column] is not None]
        if not values:
            continue
        xs = [ts.timestamp() for ts, _ in values]
        kept = lttb(xs, [value for _, value in values], query.points)
        series.append(
            MetricSeries(
                metric=metric,
                samples=len(values),
                points=[SeriesPoint(ts=values[i][0], value=values[i][1]) for i in kept],
            )
        )
    return DownsampledHistory(
        device_id=query.device_id, start=query.start, end=query.end, points=query.points, series=series
    )
