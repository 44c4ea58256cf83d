"""Geofence and trip evaluation throughput, pure Python, one process, one core.

Builds --fences fences (80 % polygons of 20–200 vertices, 100 m–2 km across, 20 % circles of 50 m–1 km)
spread over a --region-deg square region, then drives --devices trucks across it (a fix every 5 s,
up to 90 km/h, each truck's points in device order) and evaluates every point with `FenceTracker`:
once with the grid index (`FenceIndex`), once with a naive index that tests every fence's box, on the
same points. Prints points per second for each, their ratio, the fences a point is tested against, and
the events found (the two must agree). Then trips: `trips_and_stops` over a day of fixes per device.

    .venv/bin/python bench/geofence.py
    .venv/bin/python bench/geofence.py --fences 10000 --region-deg 1   # denser: a metropolitan area
"""

from __future__ import annotations

import argparse
import math
import random
import resource
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from engine.fence_index import FenceIndex  # noqa: E402
from engine.geofence import FenceEvent, FenceTracker  # noqa: E402
from engine.track import TrackPoint  # noqa: E402
from engine.trips import trips_and_stops  # noqa: E402
from models.earth import degrees_lat, degrees_lon  # noqa: E402
from models.fences.geojson import FenceRejected, parse_fence  # noqa: E402
from models.fences.shapes import Fence  # noqa: E402

LON0, LAT0 = 8.0, 48.0
T0 = datetime(2026, 3, 2, 6, tzinfo=UTC)


def make_fences(count: int, region_deg: float, rng: random.Random) -> list[dict[str, object]]:
    """GeoJSON fences: star-shaped polygons (never self-intersecting) and circles."""
    documents: list[dict[str, object]] = []
    for n in range(count):
        lon, lat = LON0 + rng.uniform(0, region_deg), LAT0 + rng.uniform(0, region_deg)
        if n % 5 == 4:
            geometry = {"type": "Point", "coordinates": [lon, lat]}
            documents.append(
                {"type": "Feature", "geometry": geometry, "properties": {"radius_m": rng.uniform(50, 1000)}}
            )
            continue
        radius_m = rng.uniform(50, 1000)
        vertices = rng.randint(20, 200)
        ring = []
        for i in range(vertices):
            angle = 2 * math.pi * i / vertices
            r = radius_m * rng.uniform(0.6, 1.0)
            ring.append([lon + degrees_lon(r * math.cos(angle), lat), lat + degrees_lat(r * math.sin(angle))])
        ring.append(ring[0])
        documents.append({"type": "Polygon", "coordinates": [ring]})
    return documents


def make_tracks(devices: int, points_each: int, region_deg: float, rng: random.Random) -> list[list[TrackPoint]]:
    """Trucks wandering the region: a fix every 5 s, heading drifting, 0–90 km/h."""
    tracks = []
    for _ in range(devices):
        lon, lat = LON0 + rng.uniform(0, region_deg), LAT0 + rng.uniform(0, region_deg)
        heading = rng.uniform(0, 2 * math.pi)
        track = []
        for i in range(points_each):
            speed_kmh = max(0.0, min(90.0, 50 + 40 * math.sin(i / 50) + rng.gauss(0, 5)))
            step_m = speed_kmh / 3.6 * 5
            heading += rng.gauss(0, 0.2)
            lon = min(LON0 + region_deg, max(LON0, lon + degrees_lon(step_m * math.sin(heading), lat)))
            lat = min(LAT0 + region_deg, max(LAT0, lat + degrees_lat(step_m * math.cos(heading))))
            track.append(TrackPoint(ts=T0 + timedelta(seconds=5 * i), lat=lat, lon=lon, speed_kmh=speed_kmh))
        tracks.append(track)
    return tracks


class ScanIndex(FenceIndex):
    """The naive baseline: every point is tested against every fence's (grown) box."""

    def __init__(self, fences: list[Fence], tolerance_m: float) -> None:
        super().__init__(fences, tolerance_m)
        self._boxes = [(f.bbox.grown(tolerance_m), f) for f in fences]

    def near(self, lon: float, lat: float) -> dict[str, Fence]:
        return {f.fence_id: f for box, f in self._boxes if box.contains(lon, lat)}


def evaluate(index: FenceIndex, tracks: list[list[TrackPoint]]) -> tuple[float, list[FenceEvent], float]:
    """Seconds taken, events found, and the mean number of candidate fences per point."""
    events: list[FenceEvent] = []
    started = time.perf_counter()
    for number, track in enumerate(tracks):
        tracker = FenceTracker(f"truck-{number}", index)
        for point in track:
            events.extend(tracker.step(point))
    elapsed = time.perf_counter() - started
    points = [p for track in tracks for p in track]
    candidates = sum(len(index.near(p.lon, p.lat)) for p in points[:20_000]) / min(len(points), 20_000)
    return elapsed, events, candidates


def trip_track(rng: random.Random, hours: int) -> list[TrackPoint]:
    """A delivery day: drives of 5–40 min between stops of 2–45 min, a fix every 10 s."""
    points, t, lat, moving = [], 0, 50.0, True
    while t < hours * 3600:
        length = rng.randint(300, 2400) if moving else rng.randint(120, 2700)
        for _ in range(0, length, 10):
            speed = rng.uniform(20, 90) if moving else 0.0
            lat += degrees_lat(speed / 3.6 * 10)
            points.append(TrackPoint(ts=T0 + timedelta(seconds=t), lat=lat, lon=10.0, speed_kmh=speed, ignition=moving))
            t += 10
        moving = not moving
    return points


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--fences", type=int, default=10_000)
    parser.add_argument("--region-deg", type=float, default=4.0, help="side of the square region, in degrees")
    parser.add_argument("--devices", type=int, default=100)
    parser.add_argument("--points", type=int, default=500, help="points per device")
    parser.add_argument("--naive-points", type=int, default=40, help="points per device for the naive scan")
    parser.add_argument("--tolerance-m", type=float, default=20.0)
    parser.add_argument("--trip-devices", type=int, default=20)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = random.Random(args.seed)

    documents = make_fences(args.fences, args.region_deg, rng)
    documents_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    started = time.perf_counter()
    fences = [parse_fence(f"f{n}", doc) for n, doc in enumerate(documents)]
    parse_s = time.perf_counter() - started
    valid = [f for f in fences if not isinstance(f, FenceRejected)]
    assert len(valid) == len(fences), [f for f in fences if isinstance(f, FenceRejected)][:3]
    vertices = sum(len(d["coordinates"][0]) - 1 for d in documents if d.get("type") == "Polygon")  # type: ignore[arg-type,index]
    started = time.perf_counter()
    index = FenceIndex(valid, args.tolerance_m)
    index_s = time.perf_counter() - started
    print(f"fences: {len(valid)} ({vertices} polygon vertices) over {args.region_deg}° x {args.region_deg}°")
    print(f"  validated in {parse_s:.2f} s ({len(valid) / parse_s:,.0f} fences/s); indexed in {index_s * 1000:.0f} ms")
    del documents  # what stays is the fences and the index
    rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(
        f"  peak resident memory: {documents_mb:.0f} MB with the GeoJSON documents, {rss_mb:.0f} MB with the fences and index too"
    )

    tracks = make_tracks(args.devices, args.points, args.region_deg, rng)
    total = args.devices * args.points
    grid_s, grid_events, grid_candidates = evaluate(index, tracks)
    short = [track[: args.naive_points] for track in tracks]
    naive_total = args.devices * args.naive_points
    naive_s, naive_events, _ = evaluate(ScanIndex(valid, args.tolerance_m), short)
    _, grid_short_events, _ = evaluate(index, short)
    assert naive_events == grid_short_events, "the index and the scan disagree"
    grid_rate, naive_rate = total / grid_s, naive_total / naive_s
    print(f"geofence evaluation, {args.devices} devices, tolerance {args.tolerance_m} m:")
    print(
        f"  grid index : {grid_rate:10,.0f} points/s ({total} points, {len(grid_events)} events, {grid_candidates:.2f} candidate fences per point)"
    )
    print(
        f"  naive scan : {naive_rate:10,.0f} points/s ({naive_total} points, {len(naive_events)} events, same as the grid's)"
    )
    print(f"  ratio      : {grid_rate / naive_rate:10,.0f} x")

    day = [trip_track(rng, 24) for _ in range(args.trip_devices)]
    trip_points = sum(len(track) for track in day)
    started = time.perf_counter()
    reports = [trips_and_stops(f"truck-{n}", track) for n, track in enumerate(day)]
    trips_s = time.perf_counter() - started
    trips = sum(len(r.trips) for r in reports)
    print(
        f"trips: {trip_points / trips_s:,.0f} points/s ({args.trip_devices} device-days, {trip_points} points, {trips} trips, {trips_s:.2f} s)"
    )


if __name__ == "__main__":
    main()
