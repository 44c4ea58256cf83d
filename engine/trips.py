"""Trips, stops and idling of one device from its track, with Traccar's trip settings as the reference.

Each point is moving or still. In motion mode (the default) a point moves when its speed is above
`speed_threshold_kmh` (the device's speed, or else the distance from the previous point over the time);
in ignition mode (`use_ignition`) a point moves when its ignition is on, and points without ignition
fall back to speed. Points either side of a gap in the data longer than `min_gap_s` count as still,
and the gap itself as a stop (Traccar's `minimalNoDataDuration`).

A run of still points parks the device, cutting a trip, when it lasts `min_parking_duration_s` (from its
first point to the next moving point), spans a gap, or (ignition mode) has the ignition off; shorter
halts (traffic lights, queues) stay inside the trip. A trip runs from its first moving point to the first
point of the parking that ends it, and counts only when it lasts `min_trip_duration_s` or covers
`min_trip_distance_m` (Traccar: either suffices); shorter ones are absorbed into the stop around them.
Stops are the times between trips, placed where the trip before ended (or at the first point). Idling is
ignition on and not moving for `idle_min_duration_s` or more, whether in a trip or a stop.

Distance is the odometer's advance over the trip when the device reports an odometer at both ends of
it (first and last point carrying one), otherwise the great-circle length of the track. Fuel used is
the fall of the fuel level (% of the tank) between the first and last point carrying one.

Everything is a function of the points in `engine.track.device_order`, so a late point changes the
result exactly as if it had come in order: re-evaluate from the start of the stop before it (or
earlier) and replace what the window held. Trips, stops and idle intervals are keyed by (device, start).
"""

from __future__ import annotations

import itertools
from collections.abc import Sequence
from datetime import datetime

import msgspec

from engine.track import TrackPoint
from models.earth import haversine_m
from models.trips import Idle, Place, Stop, Trip, TripReport

__all__ = [
    "Idle",
    "Place",
    "Resume",
    "Stop",
    "Trip",
    "TripReport",
    "TripSettings",
    "checkpoint",
    "continued",
    "replay_start",
    "resume_start",
    "spliced",
    "trips_and_stops",
]


class TripSettings(msgspec.Struct, frozen=True, kw_only=True):
    """Traccar's `report.trip.*` settings (its defaults), plus the idling thresholds."""

    min_trip_distance_m: float = 500.0
    min_trip_duration_s: float = 300.0
    min_parking_duration_s: float = 300.0
    min_gap_s: float = 3600.0
    use_ignition: bool = False
    # Traccar moves at 0.01 knots; GNSS receivers report a few tenths of km/h of noise when parked.
    speed_threshold_kmh: float = 1.0
    idle_min_duration_s: float = 60.0
    idle_max_gap_s: float = 300.0  # idling is not counted across a longer silence


def _seconds(a: TrackPoint, b: TrackPoint) -> float:
    return (b.ts - a.ts).total_seconds()


def _place(point: TrackPoint) -> Place:
    return Place(point.lat, point.lon)


def _speeds(points: Sequence[TrackPoint]) -> list[float]:
    """Each point's speed in km/h: reported, or derived from the previous point."""
    speeds = []
    for i, point in enumerate(points):
        if point.speed_kmh is not None:
            speeds.append(point.speed_kmh)
        elif i and (dt := _seconds(points[i - 1], point)) > 0:
            before = points[i - 1]
            speeds.append(haversine_m(before.lat, before.lon, point.lat, point.lon) / dt * 3.6)
        else:
            speeds.append(0.0)
    return speeds


def _moving(points: Sequence[TrackPoint], speeds: Sequence[float], settings: TripSettings) -> list[bool]:
    moving = [
        point.ignition if settings.use_ignition and point.ignition is not None else speed > settings.speed_threshold_kmh
        for point, speed in zip(points, speeds, strict=True)
    ]
    for i in range(1, len(points)):
        if _seconds(points[i - 1], points[i]) >= settings.min_gap_s:
            moving[i - 1] = moving[i] = False
    return moving


def _parks(points: Sequence[TrackPoint], first: int, after: int, settings: TripSettings) -> bool:
    """Whether the still run points[first:after] ends a trip; `after` is the next moving point or the end."""
    last = min(after, len(points) - 1)
    if _seconds(points[first], points[last]) >= settings.min_parking_duration_s:
        return True
    run = points[first : last + 1]
    if any(_seconds(a, b) >= settings.min_gap_s for a, b in itertools.pairwise(run)):
        return True
    return settings.use_ignition and any(point.ignition is False for point in points[first:after])


def _motion_spans(
    points: Sequence[TrackPoint], moving: Sequence[bool], settings: TripSettings
) -> list[tuple[int, int, bool]]:
    """(first, last, complete) index spans of candidate trips: moving runs joined across short halts."""
    spans: list[tuple[int, int, bool]] = []
    start: int | None = None
    i = 0
    while i < len(points):
        if moving[i]:
            if start is None:
                start = i
            i += 1
            continue
        after = i
        while after < len(points) and not moving[after]:
            after += 1
        if start is not None and _parks(points, i, after, settings):
            spans.append((start, i, True))
            start = None
        elif start is not None and after == len(points):
            spans.append((start, len(points) - 1, False))  # halted, not yet long enough to call it parked
            start = None
        i = after
    if start is not None:
        spans.append((start, len(points) - 1, False))
    return spans


def _trip(device_id: str, points: Sequence[TrackPoint], speeds: Sequence[float], span: tuple[int, int, bool]) -> Trip:
    first, last, complete = span
    track = points[first : last + 1]
    odometers = [point.odometer_km for point in track if point.odometer_km is not None]
    fuels = [point.fuel_pct for point in track if point.fuel_pct is not None]
    from_odometer = len(odometers) >= 2 and odometers[-1] >= odometers[0]  # a reset odometer is not trusted
    if from_odometer:
        distance = (odometers[-1] - odometers[0]) * 1000
    else:
        distance = sum(haversine_m(a.lat, a.lon, b.lat, b.lon) for a, b in itertools.pairwise(track))
    duration = _seconds(track[0], track[-1])
    return Trip(
        device_id=device_id,
        start_at=track[0].ts,
        end_at=track[-1].ts,
        start=_place(track[0]),
        end=_place(track[-1]),
        distance_m=distance,
        duration_s=duration,
        max_speed_kmh=max(speeds[first : last + 1]),
        avg_speed_kmh=distance / duration * 3.6 if duration > 0 else 0.0,
        fuel_used_pct=fuels[0] - fuels[-1] if len(fuels) >= 2 else None,
        from_odometer=from_odometer,
        complete=complete,
    )


def _stops(device_id: str, points: Sequence[TrackPoint], trips: Sequence[Trip]) -> list[Stop]:
    """The parkings between trips: before the first, between each two, and after the last (ongoing)."""
    stops = []
    since, place = points[0].ts, _place(points[0])
    for trip in trips:
        if trip.start_at > since:
            duration = (trip.start_at - since).total_seconds()
            stops.append(
                Stop(device_id=device_id, start_at=since, end_at=trip.start_at, place=place, duration_s=duration)
            )
        since, place = trip.end_at, trip.end
    if not trips or trips[-1].complete:
        duration = (points[-1].ts - since).total_seconds()
        stops.append(
            Stop(
                device_id=device_id,
                start_at=since,
                end_at=points[-1].ts,
                place=place,
                duration_s=duration,
                complete=False,
            )
        )
    return stops


def _idles(device_id: str, points: Sequence[TrackPoint], speeds: Sequence[float], settings: TripSettings) -> list[Idle]:
    idles = []
    start: int | None = None
    for i, point in enumerate(points):
        idle = point.ignition is True and speeds[i] <= settings.speed_threshold_kmh
        silent = start is not None and _seconds(points[i - 1], point) > settings.idle_max_gap_s
        if start is not None and (silent or not idle):
            end = points[i - 1] if silent else point
            if _seconds(points[start], end) >= settings.idle_min_duration_s:
                duration = _seconds(points[start], end)
                idles.append(
                    Idle(
                        device_id=device_id,
                        start_at=points[start].ts,
                        end_at=end.ts,
                        place=_place(points[start]),
                        duration_s=duration,
                    )
                )
            start = None
        if idle and start is None:
            start = i
    if start is not None and _seconds(points[start], points[-1]) >= settings.idle_min_duration_s:
        duration = _seconds(points[start], points[-1])
        idles.append(
            Idle(
                device_id=device_id,
                start_at=points[start].ts,
                end_at=points[-1].ts,
                place=_place(points[start]),
                duration_s=duration,
            )
        )
    return idles


def trips_and_stops(device_id: str, points: Sequence[TrackPoint], settings: TripSettings | None = None) -> TripReport:
    """Trips, stops and idling of one device's points, given in `engine.track.device_order`."""
    settings = settings or TripSettings()
    if not points:
        return TripReport(trips=[], stops=[], idles=[])
    speeds = _speeds(points)
    moving = _moving(points, speeds, settings)
    trips = [
        trip
        for trip in (_trip(device_id, points, speeds, span) for span in _motion_spans(points, moving, settings))
        if trip.duration_s >= settings.min_trip_duration_s or trip.distance_m >= settings.min_trip_distance_m
    ]
    return TripReport(
        trips=trips, stops=_stops(device_id, points, trips), idles=_idles(device_id, points, speeds, settings)
    )


def replay_start(report: TripReport, late_at: datetime) -> datetime | None:
    """Where to re-evaluate from when a point at `late_at` arrives late; None: from the first point.

    The start of the last stop that ended at or before `late_at`: a late point can merge the trip after
    that stop with the next one or split it, but cannot reach back into the stop, which parked the device
    before the late point's time. Keep what `report` has before it (`spliced`).
    """
    starts = [stop.start_at for stop in report.stops if stop.complete and stop.end_at <= late_at]
    return max(starts, default=None)


def spliced(before: TripReport, after: TripReport, since: datetime) -> TripReport:
    """`before`'s items that start before `since`, then `after`'s (evaluated from the points at or after
    `since`); an item of `after` replaces one of `before` with the same start (a `continued` stop)."""
    trips = {t.start_at for t in after.trips}
    stops = {s.start_at for s in after.stops}
    idles = {i.start_at for i in after.idles}
    return TripReport(
        trips=[t for t in before.trips if t.start_at < since and t.start_at not in trips] + after.trips,
        stops=[s for s in before.stops if s.start_at < since and s.start_at not in stops] + after.stops,
        idles=[i for i in before.idles if i.start_at < since and i.start_at not in idles] + after.idles,
    )


class Resume(msgspec.Struct, frozen=True):
    """Where to evaluate from (`since`; None: the first point), and the open stop whose rest the window
    continues (`continues`): the window's first stop is that stop (`continued`)."""

    since: datetime | None
    continues: Stop | None = None


def checkpoint(points: Sequence[TrackPoint], settings: TripSettings | None = None) -> datetime | None:
    """The latest point from which a later evaluation may resume without reading what came before it.

    `points` start where an evaluation started (a stop's start, a checkpoint, or the first point). It is
    a point of the trailing still run once that run has parked the device (it lasted the parking time,
    or it is all the points): every trip before it is complete. It must be still on its own (its own
    speed, not a gap's) and not idling (ignition not on), so that no trip, stop or idle interval runs
    across it but the stop it lies in. None while the device moves or halts too briefly.
    """
    settings = settings or TripSettings()
    if not points:
        return None
    moving = _moving(points, _speeds(points), settings)
    run = len(points)
    while run and not moving[run - 1]:
        run -= 1
    if run == len(points) or (run and _seconds(points[run], points[-1]) < settings.min_parking_duration_s):
        return None
    for point in reversed(points[run:]):
        slow = point.speed_kmh is None or point.speed_kmh <= settings.speed_threshold_kmh
        if slow and point.ignition is not True:
            return point.ts
    return None


def resume_start(
    stops: Sequence[Stop], new_from: datetime, *, in_order: bool, resume_at: datetime | None = None
) -> Resume:
    """Where to re-evaluate from when points from `new_from` on arrive.

    `stops` are the device's stops as last evaluated, in time order (at least the last one, and the last
    complete one ending at or before `new_from`); `resume_at` the `checkpoint` of that evaluation. Points
    that all come after every point evaluated so far (`in_order`) continue the open last stop from its
    checkpoint, or else from its start: a stop that goes on cannot change what came before it, and a
    device parked for days is not re-read on each new point. Otherwise (a late point, or a trip under
    way, which new points can still absorb into the stop before it) this is `replay_start`.
    """
    if in_order and stops and not stops[-1].complete:
        last = stops[-1]
        if resume_at is not None and resume_at > last.start_at:
            return Resume(resume_at, last)
        return Resume(last.start_at)
    return Resume(max((s.start_at for s in stops if s.complete and s.end_at <= new_from), default=None))


def continued(window: TripReport, resume: Resume) -> TripReport:
    """The `window` evaluated from `resume.since`, with its first stop as the rest of `resume.continues`."""
    stop = resume.continues
    if stop is None or not window.stops:
        return window
    first = window.stops[0]
    merged = msgspec.structs.replace(
        first, start_at=stop.start_at, place=stop.place, duration_s=(first.end_at - stop.start_at).total_seconds()
    )
    return msgspec.structs.replace(window, stops=[merged, *window.stops[1:]])
