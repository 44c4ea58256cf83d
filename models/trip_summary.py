"""Daily summaries of trips, stops and idling: per device, and per group as the sum over its devices.

A day is [midnight, next midnight) in the time zone given (UTC unless told). Durations are clipped to
the day exactly; a trip that crosses midnight has its distance and fuel shared between the two days in
proportion to its time in each. A trip is counted on the day it started.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, date, datetime, time, timedelta, tzinfo

import msgspec

from models.trips import TripReport


class DailySummary(msgspec.Struct, frozen=True, kw_only=True):
    """One day of one device (`device_id`), or of several (`device_id` None, `devices` of them)."""

    day: date
    device_id: str | None
    devices: int = 1
    trips: int = 0
    distance_m: float = 0.0
    driving_s: float = 0.0
    stopped_s: float = 0.0
    idle_s: float = 0.0
    max_speed_kmh: float = 0.0
    fuel_used_pct: float | None = None


def _overlap_s(start: datetime, end: datetime, day_start: datetime, day_end: datetime) -> float:
    return max(0.0, (min(end, day_end) - max(start, day_start)).total_seconds())


def daily_summary(device_id: str, report: TripReport, day: date, tz: tzinfo = UTC) -> DailySummary:
    """One device's day from its trip report (which should cover the whole day)."""
    day_start = datetime.combine(day, time(), tz)
    day_end = datetime.combine(day + timedelta(days=1), time(), tz)
    trips = 0
    distance = driving = max_speed = 0.0
    fuel: float | None = None
    for trip in report.trips:
        inside = _overlap_s(trip.start_at, trip.end_at, day_start, day_end)
        starts_today = day_start <= trip.start_at < day_end
        if inside == 0 and not starts_today:
            continue
        share = inside / trip.duration_s if trip.duration_s > 0 else 1.0
        trips += int(starts_today)
        distance += trip.distance_m * share
        driving += inside
        max_speed = max(max_speed, trip.max_speed_kmh)
        if trip.fuel_used_pct is not None:
            fuel = (fuel or 0.0) + trip.fuel_used_pct * share
    return DailySummary(
        day=day,
        device_id=device_id,
        trips=trips,
        distance_m=distance,
        driving_s=driving,
        stopped_s=sum(_overlap_s(stop.start_at, stop.end_at, day_start, day_end) for stop in report.stops),
        idle_s=sum(_overlap_s(idle.start_at, idle.end_at, day_start, day_end) for idle in report.idles),
        max_speed_kmh=max_speed,
        fuel_used_pct=fuel,
    )


def group_summary(day: date, summaries: Iterable[DailySummary]) -> DailySummary:
    """The sum over devices' summaries of `day` (the highest speed is the maximum; fuel sums what is known)."""
    total = DailySummary(day=day, device_id=None, devices=0)
    for summary in summaries:
        fuel = total.fuel_used_pct
        if summary.fuel_used_pct is not None:
            fuel = (fuel or 0.0) + summary.fuel_used_pct
        total = msgspec.structs.replace(
            total,
            devices=total.devices + summary.devices,
            trips=total.trips + summary.trips,
            distance_m=total.distance_m + summary.distance_m,
            driving_s=total.driving_s + summary.driving_s,
            stopped_s=total.stopped_s + summary.stopped_s,
            idle_s=total.idle_s + summary.idle_s,
            max_speed_kmh=max(total.max_speed_kmh, summary.max_speed_kmh),
            fuel_used_pct=fuel,
        )
    return total
