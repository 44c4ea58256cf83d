"""Response payloads of telemetry history."""

from __future__ import annotations

from datetime import datetime

import msgspec


class PositionFix(msgspec.Struct, frozen=True, kw_only=True):
    """A stored GNSS fix: degrees, metres, km/h, degrees clockwise from north."""

    lat: float
    lon: float
    alt: float | None
    speed: float | None
    heading: float | None
    accuracy: float | None


class AggregateStats(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """One second of a high-rate sensor, summarised on the device; `std`: its standard deviation, when sent."""

    min: float
    max: float
    avg: float
    count: int
    std: float | None = None


class TelemetryItem(msgspec.Struct, frozen=True, kw_only=True):
    """One stored sample. With `metric=…` only that value is filled (metrics or position)."""

    ts: datetime
    seq: int
    boot: int
    received_at: datetime
    position: PositionFix | None
    metrics: dict[str, float]
    quality: int | None
    aggregates: dict[str, AggregateStats] = {}


class TelemetryPage(msgspec.Struct, frozen=True, kw_only=True):
    """Samples in (ts, boot, seq) order; pass `next_cursor` as `cursor` for the next page (null: no more)."""

    items: list[TelemetryItem]
    next_cursor: str | None


class SeqGap(msgspec.Struct, frozen=True, kw_only=True):
    """Samples `first..last` (inclusive) of boot `boot` that never arrived."""

    boot: int
    first: int
    last: int
    missing: int


class SeqReset(msgspec.Struct, frozen=True, kw_only=True):
    """Within boot `boot`, the seq went back from `before` to `after` at device time `at`: the device
    counted again from `after` without a new boot number (a restart that kept its boot, or reused seqs)."""

    boot: int
    at: datetime
    before: int
    after: int


class GapReport(msgspec.Struct, frozen=True, kw_only=True):
    """What is missing from a device's history in a window, judged by its seq numbers.

    A boot's samples are taken in device-time order; a seq that does not go up there is a `reset`: what
    follows is a new run, whose gaps count on their own (a reused seq never fills another run's gap).
    Only gaps between samples inside the window count: what precedes the first one or follows the last
    one is unknown. `truncated`: more gaps or resets exist than listed.
    """

    device_id: str
    samples: int
    missing: int
    gaps: list[SeqGap]
    resets: list[SeqReset] = []
    truncated: bool


class MetricBucket(msgspec.Struct, frozen=True, kw_only=True):
    """One metric over one bucket: how many values, their extremes and their mean."""

    count: int
    min: float
    max: float
    avg: float


class PositionBucket(msgspec.Struct, frozen=True, kw_only=True):
    """The positions of one bucket: how many fixes, and the last one (by ts, then seq) with its time."""

    count: int
    lat: float
    lon: float
    ts: datetime


class TelemetryBucket(msgspec.Struct, frozen=True, kw_only=True):
    """The samples with `start <= ts < start + bucket_s`; metrics without values in it are left out."""

    start: datetime
    samples: int
    metrics: dict[str, MetricBucket]
    position: PositionBucket | None


class BucketedHistory(msgspec.Struct, frozen=True, kw_only=True):
    """History in time buckets, oldest first; only buckets holding samples are listed.

    `from` and `to` are the window widened to whole buckets. `source` says what answered: `raw`
    (the samples themselves), `rollup_1m` or `rollup_1h` (the rollups: the same figures, read faster).
    """

    device_id: str
    bucket: str
    bucket_s: int
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    source: str
    buckets: list[TelemetryBucket]


class SeriesPoint(msgspec.Struct, frozen=True, kw_only=True):
    """One stored value of a metric."""

    ts: datetime
    value: float


class MetricSeries(msgspec.Struct, frozen=True, kw_only=True):
    """One metric's values in the window, downsampled by LTTB from `samples` stored values."""

    metric: str
    samples: int
    points: list[SeriesPoint]


class DownsampledHistory(msgspec.Struct, frozen=True, kw_only=True):
    """At most `points` values per metric, chosen to keep each series' shape (first and last included)."""

    device_id: str
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    points: int
    series: list[MetricSeries]
