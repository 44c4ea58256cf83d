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


class AggregateStats(msgspec.Struct, frozen=True, kw_only=True):
    """One second of a high-rate sensor, summarised on the device."""

    min: float
    max: float
    avg: float
    count: int


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
    """Samples in (ts, seq) order; pass `next_cursor` as `cursor` for the next page (null: no more)."""

    items: list[TelemetryItem]
    next_cursor: str | None


class SeqGap(msgspec.Struct, frozen=True, kw_only=True):
    """Samples `first..last` (inclusive) of boot `boot` that never arrived."""

    boot: int
    first: int
    last: int
    missing: int


class GapReport(msgspec.Struct, frozen=True, kw_only=True):
    """What is missing from a device's history in a window, judged by its seq numbers.

    Only gaps between samples inside the window count: what precedes the first one or follows the last
    one is unknown. `truncated`: more gaps exist than listed.
    """

    device_id: str
    samples: int
    missing: int
    gaps: list[SeqGap]
    truncated: bool
