"""Trips, stops and idle intervals of a device: what the engine computes (`engine/trips.py`) and stores,
and what the API reads back and summarises (`models/trip_summary.py`). Times are device times."""

from __future__ import annotations

from datetime import datetime

import msgspec


class Place(msgspec.Struct, frozen=True):
    """Where something happened."""

    lat: float
    lon: float


class Trip(msgspec.Struct, frozen=True, kw_only=True):
    """A journey; `complete` is False while the data ends before a parking ended it."""

    device_id: str
    start_at: datetime
    end_at: datetime
    start: Place
    end: Place
    distance_m: float
    duration_s: float
    max_speed_kmh: float
    avg_speed_kmh: float
    fuel_used_pct: float | None = None
    from_odometer: bool = False
    complete: bool = True


class Stop(msgspec.Struct, frozen=True, kw_only=True):
    """A parking between trips; `complete` is False for the last one, which lasts beyond the data."""

    device_id: str
    start_at: datetime
    end_at: datetime
    place: Place
    duration_s: float
    complete: bool = True


class Idle(msgspec.Struct, frozen=True, kw_only=True):
    """Engine on, not moving."""

    device_id: str
    start_at: datetime
    end_at: datetime
    place: Place
    duration_s: float


class TripReport(msgspec.Struct, frozen=True, kw_only=True):
    """Trips, stops and idle intervals of one device, each in time order."""

    trips: list[Trip]
    stops: list[Stop]
    idles: list[Idle]
