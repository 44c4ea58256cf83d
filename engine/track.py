"""A device's track as the engine evaluates it: positions with speed, ignition, odometer and fuel.

Every evaluation in the engine is a function of a device's points in device-time order. `device_order`
is that order, total even when two points share a timestamp, so the same points given in any arrival
order evaluate to the same result.
"""

from __future__ import annotations

from bisect import bisect_right
from collections.abc import Iterable, Sequence
from datetime import datetime

import msgspec

from models.telemetry import Sample


class TrackPoint(msgspec.Struct, frozen=True, kw_only=True):
    """One position of one device at device time `ts`.

    Speed in km/h, odometer in km, fuel in % of the tank (the units of `models.telemetry`). `ignition` is
    None when unknown. `seq` breaks ties between points with the same `ts`.
    """

    ts: datetime
    lat: float
    lon: float
    seq: int = 0
    speed_kmh: float | None = None
    ignition: bool | None = None
    odometer_km: float | None = None
    fuel_pct: float | None = None


def _order_key(point: TrackPoint) -> tuple[datetime, int, float, float]:
    return point.ts, point.seq, point.lat, point.lon


def device_order(points: Iterable[TrackPoint]) -> list[TrackPoint]:
    """The points in device-time order (then `seq`, then position): the order every evaluation assumes."""
    return sorted(points, key=_order_key)


def from_sample(sample: Sample) -> TrackPoint | None:
    """The sample's position with its known metrics, or None when it carries no position.

    Ignition is read from an `ignition` metric (non-zero: on) when the device sends one.
    """
    if sample.pos is None:
        return None
    ignition = sample.metrics.get("ignition")
    return TrackPoint(
        ts=sample.ts,
        seq=sample.seq,
        lat=sample.pos.lat,
        lon=sample.pos.lon,
        speed_kmh=sample.pos.speed,
        ignition=None if ignition is None else ignition != 0,
        odometer_km=sample.metrics.get("odometer"),
        fuel_pct=sample.metrics.get("fuel"),
    )


def with_ignition(points: Sequence[TrackPoint], changes: Sequence[tuple[datetime, bool]]) -> list[TrackPoint]:
    """Fill unknown ignition from ignition events: each point takes the latest change at or before it.

    `changes` is (device time, on) in time order, e.g. from the device's `ignition` events. A point that
    reports ignition itself keeps its own value.
    """
    times = [at for at, _ in changes]
    filled = []
    for point in points:
        index = bisect_right(times, point.ts)
        known = point.ignition is not None or not index
        filled.append(point if known else msgspec.structs.replace(point, ignition=changes[index - 1][1]))
    return filled
