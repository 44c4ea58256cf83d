"""Trips, stops and idling over a route whose answer was worked out by hand (route_depot_day.json).

The route, one truck on 2 March 2026 (UTC), driving due north along 10°E so that every distance is
latitude degrees × 111,195.08 m (the great-circle metres per degree on the IUGG mean radius):

- 07:00–07:32 parked at the depot (50.000); ignition on at 07:30: idling 07:30–07:33 (180 s).
- 07:33–07:44 trip 1: 50.000 → 50.050 = 5,559.75 m in 660 s (30.33 km/h on average, 55 at most), with a
  traffic light 07:38–07:40 (2 min still, shorter than the 5 min that parks: inside the trip, idling
  120 s); fuel 80.0 % → 78.5 %: 1.5 % used.
- 07:44–09:00 parked at 50.050 (4,560 s); ignition on at 08:58: idling 08:58–09:00 (120 s).
- 09:00–09:15 trip 2: odometer 1000.0 → 1008.0 km = 8,000 m in 900 s (32 km/h, 70 at most).
- 09:15–10:00 parked at 50.120 (2,700 s, still going at the end of the data). The 09:40 move of 20 m in
  one minute is under both the trip's minimal distance (500 m) and duration (300 s): no trip.
"""

from __future__ import annotations

import itertools
import random
from datetime import UTC, date, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from engine.track import TrackPoint, device_order
from engine.trips import (
    Place,
    TripReport,
    TripSettings,
    checkpoint,
    continued,
    replay_start,
    resume_start,
    spliced,
    trips_and_stops,
)
from models.earth import M_PER_DEG_LAT
from models.trip_summary import daily_summary, group_summary

ROUTE = msgspec.json.decode((Path(__file__).parent / "route_depot_day.json").read_bytes(), type=list[TrackPoint])
DAY = date(2026, 3, 2)


def at(hhmm: str) -> datetime:
    return datetime.fromisoformat(f"2026-03-02T{hhmm}:00+00:00")


def test_trips_of_the_route_are_the_ones_worked_out_by_hand() -> None:
    report = trips_and_stops("truck-7", ROUTE)
    first, second = report.trips
    assert (first.start_at, first.end_at) == (at("07:33"), at("07:44"))
    assert (first.start, first.end) == (Place(50.0, 10.0), Place(50.05, 10.0))
    assert first.distance_m == pytest.approx(0.05 * M_PER_DEG_LAT)
    assert first.distance_m == pytest.approx(5559.754, abs=0.001)
    assert first.duration_s == 660
    assert first.max_speed_kmh == 55
    assert first.avg_speed_kmh == pytest.approx(30.3259, abs=1e-4)
    assert first.fuel_used_pct == pytest.approx(1.5)
    assert not first.from_odometer
    assert (second.start_at, second.end_at) == (at("09:00"), at("09:15"))
    assert second.from_odometer
    assert second.distance_m == pytest.approx(8000.0)
    assert second.avg_speed_kmh == pytest.approx(32.0)
    assert second.max_speed_kmh == 70
    assert second.fuel_used_pct is None
    assert first.complete
    assert second.complete


def test_stops_and_idling_of_the_route_are_the_ones_worked_out_by_hand() -> None:
    report = trips_and_stops("truck-7", ROUTE)
    assert [(s.start_at, s.end_at, s.place, s.duration_s, s.complete) for s in report.stops] == [
        (at("07:00"), at("07:33"), Place(50.0, 10.0), 1980, True),
        (at("07:44"), at("09:00"), Place(50.05, 10.0), 4560, True),
        (at("09:15"), at("10:00"), Place(50.12, 10.0), 2700, False),
    ]
    assert [(i.start_at, i.end_at, i.duration_s) for i in report.idles] == [
        (at("07:30"), at("07:33"), 180),
        (at("07:38"), at("07:40"), 120),
        (at("08:58"), at("09:00"), 120),
    ]


def test_trips_of_a_shuffled_route_sorted_again_are_the_same() -> None:
    expected = trips_and_stops("truck-7", ROUTE)
    for seed in range(5):
        shuffled = ROUTE.copy()
        random.Random(seed).shuffle(shuffled)
        assert shuffled != ROUTE
        assert trips_and_stops("truck-7", device_order(shuffled)) == expected


def test_trips_late_point_in_the_middle_of_a_stop_splits_it() -> None:
    # A fix from the truck's offline buffer: at 08:00 it was 1.1 km north, driving.
    late = TrackPoint(ts=at("08:00"), seq=99, lat=50.06, lon=10.0, speed_kmh=45, ignition=True)
    before = trips_and_stops("truck-7", ROUTE)
    after = trips_and_stops("truck-7", device_order([*ROUTE, late]))
    assert len(before.trips) == 2
    assert [(t.start_at, t.end_at) for t in after.trips] == [
        (at("07:33"), at("07:44")),
        (at("08:00"), at("08:15")),
        (at("09:00"), at("09:15")),
    ]
    # From its first moving point (the late fix) back to where it parked again: 0.01° of latitude.
    assert after.trips[1].distance_m == pytest.approx(0.01 * M_PER_DEG_LAT)
    assert [(s.start_at, s.end_at) for s in after.stops] == [
        (at("07:00"), at("07:33")),
        (at("07:44"), at("08:00")),
        (at("08:15"), at("09:00")),
        (at("09:15"), at("10:00")),
    ]


def test_trips_late_still_point_in_a_stop_changes_nothing() -> None:
    late = TrackPoint(ts=at("08:30"), seq=98, lat=50.05, lon=10.0, speed_kmh=0, ignition=False)
    assert trips_and_stops("truck-7", device_order([*ROUTE, late])) == trips_and_stops("truck-7", ROUTE)


def test_trips_natural_keys_are_device_and_start() -> None:
    report = trips_and_stops("truck-7", ROUTE)
    keys = [(item.device_id, item.start_at) for item in [*report.trips, *report.stops]]
    assert len(set(keys)) == len(keys)


def _drive(start: datetime, minutes: int, lat0: float, step_deg: float, **fields: object) -> list[TrackPoint]:
    return [
        msgspec.convert(
            {"ts": start + timedelta(minutes=m), "lat": lat0 + step_deg * m, "lon": 10.0, **fields}, TrackPoint
        )
        for m in range(minutes + 1)
    ]


def test_trips_a_gap_in_the_data_ends_a_trip() -> None:
    t0 = datetime(2026, 3, 2, 6, tzinfo=UTC)
    before = _drive(t0, 10, 50.0, 0.005, speed_kmh=40)
    after = _drive(t0 + timedelta(hours=2), 10, 50.2, 0.005, speed_kmh=40)
    report = trips_and_stops("t", [*before, *after])
    assert [(t.start_at, t.end_at) for t in report.trips] == [
        (t0, t0 + timedelta(minutes=10)),  # the point before the gap counts as still: the trip ends there
        (t0 + timedelta(hours=2, minutes=1), t0 + timedelta(hours=2, minutes=10)),
    ]
    assert not report.trips[1].complete


def test_trips_derive_speed_from_positions_when_the_device_sends_none() -> None:
    t0 = datetime(2026, 3, 2, 6, tzinfo=UTC)
    points = [*_drive(t0, 10, 50.0, 0.005), *_drive(t0 + timedelta(minutes=11), 10, 50.05, 0.0)]
    (trip,) = trips_and_stops("t", points).trips
    assert trip.max_speed_kmh == pytest.approx(0.005 * M_PER_DEG_LAT * 60 / 1000)  # 556 m a minute
    assert trip.end_at == t0 + timedelta(minutes=11)


def test_trips_in_ignition_mode_a_short_ignition_off_parks() -> None:
    t0 = datetime(2026, 3, 2, 6, tzinfo=UTC)
    drive1 = _drive(t0, 10, 50.0, 0.005, speed_kmh=40, ignition=True)
    # Two minutes with the engine off (a delivery), then on again.
    off = _drive(t0 + timedelta(minutes=11), 2, 50.05, 0.0, speed_kmh=0, ignition=False)
    drive2 = _drive(t0 + timedelta(minutes=14), 10, 50.05, 0.005, speed_kmh=40, ignition=True)
    points = [*drive1, *off, *drive2]
    assert len(trips_and_stops("t", points).trips) == 1  # motion: 3 min still does not park
    by_ignition = trips_and_stops("t", points, TripSettings(use_ignition=True))
    assert [t.end_at for t in by_ignition.trips] == [t0 + timedelta(minutes=11), t0 + timedelta(minutes=24)]


def test_trips_idling_is_not_counted_across_a_silence() -> None:
    t0 = datetime(2026, 3, 2, 6, tzinfo=UTC)
    idle = [
        TrackPoint(ts=t0 + timedelta(minutes=m), lat=50, lon=10, speed_kmh=0, ignition=True) for m in (0, 2, 20, 22)
    ]
    report = trips_and_stops("t", idle)
    assert [(i.start_at, i.end_at) for i in report.idles] == [
        (t0, t0 + timedelta(minutes=2)),
        (t0 + timedelta(minutes=20), t0 + timedelta(minutes=22)),
    ]


def test_trips_daily_summary_of_the_route() -> None:
    summary = daily_summary("truck-7", trips_and_stops("truck-7", ROUTE), DAY)
    assert summary.trips == 2
    assert summary.distance_m == pytest.approx(0.05 * M_PER_DEG_LAT + 8000)
    assert summary.driving_s == 660 + 900
    assert summary.stopped_s == 1980 + 4560 + 2700
    assert summary.idle_s == 180 + 120 + 120
    assert summary.max_speed_kmh == 70
    assert summary.fuel_used_pct == pytest.approx(1.5)
    assert daily_summary("truck-7", trips_and_stops("truck-7", ROUTE), DAY + timedelta(days=1)).trips == 0


def test_trips_daily_summary_shares_a_trip_across_midnight() -> None:
    t0 = datetime(2026, 3, 2, 23, 50, tzinfo=UTC)
    points = _drive(t0, 20, 50.0, 0.005, speed_kmh=40)
    report = trips_and_stops("t", points)
    (trip,) = report.trips
    first, second = daily_summary("t", report, DAY), daily_summary("t", report, DAY + timedelta(days=1))
    assert (first.trips, second.trips) == (1, 0)
    assert first.driving_s == second.driving_s == 600
    assert first.distance_m == pytest.approx(trip.distance_m / 2)
    assert first.distance_m + second.distance_m == pytest.approx(trip.distance_m)


def test_trips_group_summary_is_the_sum_over_devices() -> None:
    one = daily_summary("a", trips_and_stops("a", ROUTE), DAY)
    other = daily_summary("b", trips_and_stops("b", ROUTE[:20]), DAY)
    group = group_summary(DAY, [one, other])
    assert group.device_id is None
    assert group.devices == 2
    assert group.trips == one.trips + other.trips == 3
    assert group.distance_m == pytest.approx(one.distance_m + other.distance_m)
    assert group.idle_s == one.idle_s + other.idle_s
    assert group.max_speed_kmh == 70


@pytest.mark.parametrize("late_at", ["07:35", "07:47", "08:00", "09:12", "09:50"])
def test_trips_replaying_from_the_stop_before_a_late_point_equals_evaluating_everything(late_at: str) -> None:
    late = TrackPoint(ts=at(late_at), seq=99, lat=50.2, lon=10.0, speed_kmh=45, ignition=True)
    before = trips_and_stops("truck-7", ROUTE)
    everything = device_order([*ROUTE, late])
    since = replay_start(before, late.ts)
    assert since is not None or late_at == "07:35"
    if since is None:
        replayed = trips_and_stops("truck-7", everything)
    else:
        window = trips_and_stops("truck-7", [p for p in everything if p.ts >= since])
        replayed = spliced(before, window, since)
    assert replayed == trips_and_stops("truck-7", everything)


def _delivered(
    device_id: str, chunks: list[list[TrackPoint]], settings: TripSettings | None = None, read: list[int] | None = None
) -> TripReport:
    """The report the engine keeps when `chunks` arrive one after another (engine/trip_stage.py): each
    re-evaluated from `resume_start` over the points arrived so far, spliced into what was kept; `read`
    collects how many points each evaluation read."""
    kept = TripReport(trips=[], stops=[], idles=[])
    arrived: list[TrackPoint] = []
    head: datetime | None = None
    resume_at: datetime | None = None
    for chunk in chunks:
        arrived = device_order([*arrived, *chunk])
        new_from = min(p.ts for p in chunk)
        resume = resume_start(kept.stops, new_from, in_order=head is not None and new_from > head, resume_at=resume_at)
        since = new_from if head is None else resume.since
        window_points = [p for p in arrived if since is None or p.ts >= since]
        window = continued(trips_and_stops(device_id, window_points, settings), resume)
        kept = window if since is None else spliced(kept, window, since)
        head, resume_at = arrived[-1].ts, checkpoint(window_points, settings)
        if read is not None:
            read.append(len(window_points))
    return kept


@pytest.mark.parametrize("size", [1, 2, 3, 7])
def test_trips_resumed_chunk_by_chunk_in_order_equal_evaluating_everything(size: int) -> None:
    chunks = [ROUTE[i : i + size] for i in range(0, len(ROUTE), size)]
    assert _delivered("truck-7", chunks) == trips_and_stops("truck-7", ROUTE)


@pytest.mark.parametrize("seed", range(6))
def test_trips_resumed_chunk_by_chunk_shuffled_and_late_equal_evaluating_everything(seed: int) -> None:
    late = TrackPoint(ts=at("08:00"), seq=99, lat=50.06, lon=10.0, speed_kmh=45, ignition=True)
    shuffled = [*ROUTE, late]
    random.Random(seed).shuffle(shuffled)
    chunks = [shuffled[i : i + 1 + seed % 3] for i in range(0, len(shuffled), 1 + seed % 3)]
    assert _delivered("truck-7", chunks) == trips_and_stops("truck-7", device_order([*ROUTE, late]))


def test_trips_resumed_in_order_with_derived_speeds_and_ignition_mode_equal_evaluating_everything() -> None:
    t0 = datetime(2026, 3, 2, 6, tzinfo=UTC)
    drive1 = _drive(t0, 10, 50.0, 0.005, ignition=True)
    parked = _drive(t0 + timedelta(minutes=11), 20, 50.05, 0.0, ignition=False)
    drive2 = _drive(t0 + timedelta(minutes=32), 10, 50.05, 0.005, ignition=True)
    points = [*drive1, *parked, *drive2]
    for settings in (TripSettings(), TripSettings(use_ignition=True)):
        expected = trips_and_stops("t", points, settings)
        assert len(expected.trips) == 2
        assert _delivered("t", [[p] for p in points], settings) == expected


def test_trips_a_device_parked_for_long_is_resumed_from_its_last_points_not_the_whole_stop() -> None:
    t0 = datetime(2026, 3, 2, 6, tzinfo=UTC)
    drive = _drive(t0, 10, 50.0, 0.005, speed_kmh=40)
    parked = _drive(t0 + timedelta(minutes=11), 600, 50.05, 0.0, speed_kmh=0.3)  # ten hours, GNSS noise
    # The engine left running for 3 minutes at 12:00, then off again: idling inside the stop.
    idling = [p if not 349 <= i <= 352 else msgspec.structs.replace(p, ignition=True) for i, p in enumerate(parked)]
    points = [*drive, *idling, *_drive(t0 + timedelta(minutes=612), 10, 50.05, 0.005, speed_kmh=40)]
    read: list[int] = []
    assert _delivered("t", [[p] for p in points], read=read) == trips_and_stops("t", points)
    assert max(read[30:600]) <= 6  # a few points a time while parked, not the whole stop
    assert len(trips_and_stops("t", points).idles) == 1


def test_trips_checkpoint_waits_until_a_halt_has_parked_and_skips_idling_points() -> None:
    t0 = datetime(2026, 3, 2, 6, tzinfo=UTC)
    drive = _drive(t0, 10, 50.0, 0.005, speed_kmh=40)
    halt = _drive(t0 + timedelta(minutes=11), 3, 50.05, 0.0, speed_kmh=0)
    assert checkpoint(drive) is None  # moving
    assert checkpoint([*drive, *halt]) is None  # 3 minutes: a traffic light, not yet parked
    parked = _drive(t0 + timedelta(minutes=11), 6, 50.05, 0.0, speed_kmh=0)
    assert checkpoint([*drive, *parked]) == parked[-1].ts
    running = [*parked[:-2], *(msgspec.structs.replace(p, ignition=True) for p in parked[-2:])]
    assert checkpoint([*drive, *running]) == parked[-3].ts


def _random_track(rng: random.Random, count: int) -> list[TrackPoint]:
    """Drives, halts, parkings, idling, silences and missing speeds, at random."""
    points, ts, lat, seq = [], datetime(2026, 3, 2, 6, tzinfo=UTC), 50.0, 0
    while len(points) < count:
        moving, ignition = rng.random() < 0.5, rng.choice([True, False, None])
        for _ in range(rng.randint(1, 15)):
            ts += timedelta(seconds=rng.choice([10, 30, 60, 60, 120, 600, 4000]))
            lat += 0.004 if moving else rng.choice([0.0, 0.00001])
            speed = rng.choice([40.0, 60.0, None]) if moving else rng.choice([0.0, 0.5, None])
            points.append(TrackPoint(ts=ts, seq=seq, lat=lat, lon=10.0, speed_kmh=speed, ignition=ignition))
            seq += 1
    return points


@pytest.mark.parametrize("seed", range(40))
def test_trips_resumed_chunk_by_chunk_equal_evaluating_everything_on_random_tracks(seed: int) -> None:
    rng = random.Random(seed)
    points = _random_track(rng, 150)
    settings = TripSettings(use_ignition=seed % 2 == 1)
    expected = trips_and_stops("t", points, settings)
    cuts = sorted(rng.sample(range(1, len(points)), 40))
    in_order = [points[a:b] for a, b in itertools.pairwise([0, *cuts, len(points)])]
    assert _delivered("t", in_order, settings) == expected
    mixed = points.copy()
    for _ in range(10):  # a few points from the offline buffer, delivered late
        i, j = rng.randrange(len(mixed)), rng.randrange(len(mixed))
        mixed[i], mixed[j] = mixed[j], mixed[i]
    sizes = [rng.randint(1, 8) for _ in mixed]
    chunks, at = [], 0
    for size in sizes:
        if at < len(mixed):
            chunks.append(mixed[at : at + size])
            at += size
    assert _delivered("t", chunks, settings) == expected


def test_trips_a_short_move_halted_briefly_then_driving_on_is_one_trip_when_resumed() -> None:
    t0 = datetime(2026, 3, 2, 6, tzinfo=UTC)
    parked = _drive(t0, 10, 50.0, 0.0, speed_kmh=0)
    creep = _drive(t0 + timedelta(minutes=11), 2, 50.0, 0.001, speed_kmh=10)  # too short for a trip so far
    halt = _drive(t0 + timedelta(minutes=14), 1, 50.002, 0.0, speed_kmh=0)  # a light, not a parking
    drive = _drive(t0 + timedelta(minutes=16), 10, 50.002, 0.005, speed_kmh=40)
    points = [*parked, *creep, *halt, *drive]
    expected = trips_and_stops("t", points)
    assert trips_and_stops("t", [*parked, *creep, *halt]).trips == []  # so far, part of the stop
    assert [t.start_at for t in expected.trips] == [t0 + timedelta(minutes=11)]
    assert _delivered("t", [[p] for p in points]) == expected
    assert _delivered("t", [points[:15], points[15:16], points[16:]]) == expected  # the drive in one message
