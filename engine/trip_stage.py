"""Trips, stops and idling of the devices a cycle touched, evaluated and stored in the cycle's transaction.

Per device, the points (samples with a position) are evaluated again from `resume_start`: when the new
points all follow the last one evaluated, from the open last stop's checkpoint (a point of the parking
from which nothing before needs reading again) or its start; else from the start of the last complete
stop before the earliest new point (`replay_start`). A device evaluated for the first time starts at
its earliest new point. The items from that instant on are replaced by the window's: rows no longer
found are deleted, the others upserted by their natural key (device, start), and a row that did not
change is not written. A re-run (a redelivered batch, a takeover after a crash) therefore writes nothing
new, and a late point in the middle of a stop splits it exactly as an ordered delivery would have
(`engine/trips.py`).

The device's last evaluated point and its checkpoint are kept in `engine_trip_heads`, in the same
transaction, so the next owner of the partition tells late points from new ones, and resumes, exactly as
this one would have.

Ignition is read from an `ignition` metric (non-zero: on). Ignition events are not merged in yet
(`engine.track.with_ignition` does it, given the device's events).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Final

from engine.cycle_reads import FUEL, IGNITION, LAT, LON, ODOMETER, SPEED, Row
from engine.cycle_writes import Writes
from engine.track import TrackPoint, device_order
from engine.trips import (
    Idle,
    Resume,
    Stop,
    Trip,
    TripSettings,
    checkpoint,
    continued,
    resume_start,
    trips_and_stops,
)

SETTINGS: Final = TripSettings()

_SET_HEAD = (
    "INSERT INTO engine_trip_heads (device_id, ts, boot, seq, resume_at)"
    " SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::integer[], %s::bigint[], %s::timestamptz[])"
    " ON CONFLICT (device_id) DO UPDATE SET ts = EXCLUDED.ts, boot = EXCLUDED.boot, seq = EXCLUDED.seq,"
    " resume_at = EXCLUDED.resume_at, updated_at = now()"
)
_FORGET = (
    "WITH gone_trips AS (DELETE FROM trips WHERE device_id = %(device)s AND started_at >= %(since)s"
    " AND NOT started_at = ANY(%(trips)s)),"
    " gone_stops AS (DELETE FROM stops WHERE device_id = %(device)s AND started_at >= %(since)s"
    " AND NOT started_at = ANY(%(stops)s))"
    " DELETE FROM idle_periods WHERE device_id = %(device)s AND started_at >= %(since)s"
    " AND NOT started_at = ANY(%(idles)s)"
)
_UPSERT_TRIP = (
    "INSERT INTO trips (device_id, started_at, ended_at, start_lat, start_lon, end_lat, end_lon, distance_m,"
    " from_odometer, duration_s, max_speed_kmh, avg_speed_kmh, fuel_used_pct, complete)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (device_id, started_at) DO UPDATE SET ended_at = EXCLUDED.ended_at,"
    " start_lat = EXCLUDED.start_lat, start_lon = EXCLUDED.start_lon, end_lat = EXCLUDED.end_lat,"
    " end_lon = EXCLUDED.end_lon, distance_m = EXCLUDED.distance_m, from_odometer = EXCLUDED.from_odometer,"
    " duration_s = EXCLUDED.duration_s, max_speed_kmh = EXCLUDED.max_speed_kmh,"
    " avg_speed_kmh = EXCLUDED.avg_speed_kmh, fuel_used_pct = EXCLUDED.fuel_used_pct,"
    " complete = EXCLUDED.complete, updated_at = now()"
    " WHERE (trips.ended_at, trips.start_lat, trips.start_lon, trips.end_lat, trips.end_lon, trips.distance_m,"
    " trips.from_odometer, trips.duration_s, trips.max_speed_kmh, trips.avg_speed_kmh, trips.fuel_used_pct,"
    " trips.complete) IS DISTINCT FROM (EXCLUDED.ended_at, EXCLUDED.start_lat, EXCLUDED.start_lon,"
    " EXCLUDED.end_lat, EXCLUDED.end_lon, EXCLUDED.distance_m, EXCLUDED.from_odometer, EXCLUDED.duration_s,"
    " EXCLUDED.max_speed_kmh, EXCLUDED.avg_speed_kmh, EXCLUDED.fuel_used_pct, EXCLUDED.complete)"
)
_UPSERT_STOP = (
    "INSERT INTO stops (device_id, started_at, ended_at, lat, lon, duration_s, complete)"
    " VALUES (%s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (device_id, started_at) DO UPDATE SET ended_at = EXCLUDED.ended_at, lat = EXCLUDED.lat,"
    " lon = EXCLUDED.lon, duration_s = EXCLUDED.duration_s, complete = EXCLUDED.complete, updated_at = now()"
    " WHERE (stops.ended_at, stops.lat, stops.lon, stops.duration_s, stops.complete) IS DISTINCT FROM"
    " (EXCLUDED.ended_at, EXCLUDED.lat, EXCLUDED.lon, EXCLUDED.duration_s, EXCLUDED.complete)"
)
_UPSERT_IDLE = (
    "INSERT INTO idle_periods (device_id, started_at, ended_at, lat, lon, duration_s)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (device_id, started_at) DO UPDATE SET ended_at = EXCLUDED.ended_at, lat = EXCLUDED.lat,"
    " lon = EXCLUDED.lon, duration_s = EXCLUDED.duration_s, updated_at = now()"
    " WHERE (idle_periods.ended_at, idle_periods.lat, idle_periods.lon, idle_periods.duration_s)"
    " IS DISTINCT FROM (EXCLUDED.ended_at, EXCLUDED.lat, EXCLUDED.lon, EXCLUDED.duration_s)"
)

# Written at the end of the cycle, in this order (engine/cycle_writes.py): what the window no longer has
# is deleted before the window's items are upserted.
WRITES: Final = (_FORGET, _UPSERT_TRIP, _UPSERT_STOP, _UPSERT_IDLE, _SET_HEAD)
COLUMNAR: Final = (_SET_HEAD,)


def _point(row: Row) -> TrackPoint:
    ignition = row[IGNITION]
    return TrackPoint(
        ts=row[0],
        seq=row[2],
        lat=row[LAT],
        lon=row[LON],
        speed_kmh=row[SPEED],
        ignition=None if ignition is None else ignition != 0,
        odometer_km=row[ODOMETER],
        fuel_pct=row[FUEL],
    )


def _trip_row(trip: Trip) -> tuple[Any, ...]:
    return (
        trip.device_id,
        trip.start_at,
        trip.end_at,
        trip.start.lat,
        trip.start.lon,
        trip.end.lat,
        trip.end.lon,
        trip.distance_m,
        trip.from_odometer,
        trip.duration_s,
        trip.max_speed_kmh,
        trip.avg_speed_kmh,
        trip.fuel_used_pct,
        trip.complete,
    )


def _stop_row(stop: Stop) -> tuple[Any, ...]:
    return (stop.device_id, stop.start_at, stop.end_at, stop.place.lat, stop.place.lon, stop.duration_s, stop.complete)


def _idle_row(idle: Idle) -> tuple[Any, ...]:
    return (idle.device_id, idle.start_at, idle.end_at, idle.place.lat, idle.place.lon, idle.duration_s)


def resume(head: tuple[datetime, datetime | None] | None, stops: list[Stop], new_from: datetime) -> Resume:
    """Where the device's trips are evaluated again from, given its trip head (`cycle_reads.Heads.trips`),
    its stops as `cycle_reads.read_stops` reads them, and its earliest new point; `since` None: from its
    first point."""
    in_order = head is not None and new_from > head[0]
    chosen = resume_start(stops, new_from, in_order=in_order, resume_at=head[1] if head is not None else None)
    # Never evaluated: from the new points (a position-less sensor is not re-read from its first sample).
    return Resume(new_from) if head is None else chosen


def evaluate_trips(
    device_id: str, since: Resume, samples: list[Row], writes: Writes, settings: TripSettings = SETTINGS
) -> int:
    """Re-evaluate the device's trips, stops and idling from `since` (`resume`), given its samples from then
    on (or earlier), and write them at the cycle's end; return how many points were evaluated."""
    start = since.since
    rows = [s for s in samples if s[LAT] is not None and s[LON] is not None and (start is None or s[0] >= start)]
    if not rows:
        return 0  # no position among the device's samples: nothing to evaluate
    points = device_order(_point(row) for row in rows)
    report = continued(trips_and_stops(device_id, points, settings), since)
    forget = {
        "device": device_id,
        "since": start if start is not None else datetime.min.replace(tzinfo=UTC),
        "trips": [trip.start_at for trip in report.trips],
        "stops": [stop.start_at for stop in report.stops],
        "idles": [idle.start_at for idle in report.idles],
    }
    writes.add(_FORGET, forget)
    for trip in report.trips:
        writes.add(_UPSERT_TRIP, _trip_row(trip))
    for stop in report.stops:
        writes.add(_UPSERT_STOP, _stop_row(stop))
    for idle in report.idles:
        writes.add(_UPSERT_IDLE, _idle_row(idle))
    last = max(rows, key=lambda row: (row[0], row[1], row[2]))
    writes.add(_SET_HEAD, (device_id, last[0], last[1], last[2], checkpoint(points, settings)))
    return len(rows)
