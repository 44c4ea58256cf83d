"""Generated road-like routes around a city centre, and a vehicle's motion along one.

No road data exists offline, so routes are made up: from a random start within the city, a route runs
along a street grid (rotated by a per-route angle, each street a few degrees off true), turning at
intersections, now and then taking a diagonal avenue, and steering back towards the centre when it
strays near the edge of the city radius. Routes are endless and generated lazily; the same seed always
gives the same route.

Geometry uses a local flat projection around the centre (x east, y north, in metres): over 20 km its
error is far below GNSS noise.
"""

from __future__ import annotations

import math
import random
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Final

import msgspec

M_PER_DEG_LAT: Final = 111_320.0
ROUTE_RADIUS_M: Final = 20_000.0
BLOCK_MIN_M: Final = 90.0
BLOCK_MAX_M: Final = 240.0
BLOCKS_PER_STREET_MAX: Final = 8
AVENUE_CHANCE: Final = 0.08
STREET_JITTER_DEG: Final = 4.0
RETURN_FRACTION: Final = 0.75  # beyond this share of the radius, routes turn back towards the centre

CRUISE_MIN_KMH: Final = 30.0
CRUISE_MAX_KMH: Final = 90.0
TURN_SPEED_KMH: Final = 18.0
CREEP_SPEED_KMH: Final = 5.0  # the last metres before a stop line, so a stop is reached in finite time
ACCEL_MS2: Final = 1.0  # a loaded truck
BRAKE_MS2: Final = 1.8
LIGHT_CHANCE: Final = 0.3
LIGHT_WAIT_MIN_S: Final = 8.0
LIGHT_WAIT_MAX_S: Final = 60.0
MOTION_STEP_S: Final = 0.5  # longer steps are integrated in pieces of at most this


@dataclass(frozen=True, slots=True)
class GeoPoint:
    """A WGS84 coordinate in degrees."""

    lat: float
    lon: float


DEFAULT_CENTRE: Final = GeoPoint(52.5200, 13.4050)  # Berlin Mitte; any city away from the poles works


@dataclass(frozen=True, slots=True)
class Motion:
    """Where a vehicle is after a step: position, speed (km/h), heading (0 ≤ h < 360), odometer (km)."""

    position: GeoPoint
    speed_kmh: float
    heading_deg: float
    odometer_km: float
    stopped: bool


def bearing_deg(dx: float, dy: float) -> float:
    """Compass bearing of the vector (east dx, north dy): clockwise from north, 0 ≤ b < 360."""
    bearing = math.degrees(math.atan2(dx, dy)) % 360.0
    # A tiny negative angle modulo 360 rounds to exactly 360.0, which is out of range.
    return 0.0 if bearing >= 360.0 else bearing


class Waypoint(msgspec.Struct, frozen=True):
    """An intersection of a route: its number along the route, where it is (local metres) and which of the
    four grid directions led to it. Everything needed to go on generating the route from here."""

    index: int
    x: float
    y: float
    street: int


class Route:
    """An endless street-like polyline around `centre`, the same for the same seed.

    Each waypoint is drawn from its predecessor with a random generator seeded by the route's seed and
    the predecessor's number, so the route can be taken up again from any saved `Waypoint` without
    generating what came before it.
    """

    def __init__(self, seed: int | str, *, centre: GeoPoint = DEFAULT_CENTRE, radius_m: float = ROUTE_RADIUS_M) -> None:
        if not -80.0 <= centre.lat <= 80.0:
            raise ValueError("the flat projection needs a centre away from the poles")
        self.centre = centre
        self.radius_m = radius_m
        self._seed = seed
        self._m_per_deg_lon = M_PER_DEG_LAT * math.cos(math.radians(centre.lat))
        self._grid_deg = self._rng("grid").uniform(0.0, 90.0)

    def to_geo(self, x: float, y: float) -> GeoPoint:
        """The coordinate of local point (x east, y north) in metres from the centre."""
        return GeoPoint(self.centre.lat + y / M_PER_DEG_LAT, self.centre.lon + x / self._m_per_deg_lon)

    def start(self) -> Waypoint:
        """The route's first intersection: a random point within half the city radius."""
        rng = self._rng("start")
        start_r = self.radius_m * 0.5 * math.sqrt(rng.random())
        start_a = rng.uniform(0.0, 2 * math.pi)
        return Waypoint(0, start_r * math.sin(start_a), start_r * math.cos(start_a), rng.randrange(4))

    def after(self, point: Waypoint) -> Waypoint:
        """The intersection that follows `point` on this route (always the same one)."""
        rng = self._rng(point.index)
        street, x, y = point.street, point.x, point.y
        while True:
            street = self._next_street(rng, street, x, y)
            if rng.random() < AVENUE_CHANCE:
                direction = self._grid_deg + 90.0 * street + rng.choice((-45.0, 45.0))
            else:
                direction = self._grid_deg + 90.0 * street + rng.uniform(-STREET_JITTER_DEG, STREET_JITTER_DEG)
            length = sum(rng.uniform(BLOCK_MIN_M, BLOCK_MAX_M) for _ in range(rng.randint(1, BLOCKS_PER_STREET_MAX)))
            nx, ny = x + length * math.sin(math.radians(direction)), y + length * math.cos(math.radians(direction))
            if math.hypot(nx, ny) <= self.radius_m:
                return Waypoint(point.index + 1, nx, ny, street)
            # A street leaving the city: pick another at this intersection.

    def waypoints(self) -> Iterator[tuple[float, float]]:
        """The route's intersections in local metres, from its start, without end."""
        point = self.start()
        while True:
            yield point.x, point.y
            point = self.after(point)

    def _rng(self, part: int | str) -> random.Random:
        # Deterministic simulation, not security: a seeded PRNG is the point.
        return random.Random(f"route:{self._seed}:{part}")  # noqa: S311

    def _next_street(self, rng: random.Random, street: int, x: float, y: float) -> int:
        """Which of the four grid directions to take at (x, y): never a U-turn; homewards near the edge."""
        choices = [street, (street + 1) % 4, (street + 3) % 4]
        if math.hypot(x, y) > self.radius_m * RETURN_FRACTION:
            to_centre = bearing_deg(-x, -y)
            return min(choices, key=lambda s: _angle_between(self._grid_deg + 90.0 * s, to_centre))
        # Mostly straight on, as traffic does; otherwise left or right.
        return rng.choices(choices, weights=(0.5, 0.25, 0.25))[0]


def _angle_between(a_deg: float, b_deg: float) -> float:
    """The absolute difference of two bearings, 0…180."""
    diff = abs(a_deg - b_deg) % 360.0
    return 360.0 - diff if diff > 180.0 else diff


class DrivePlace(msgspec.Struct, frozen=True):
    """Where a `Drive` is, enough to continue it after a restart: the start of the street it is on, how
    far along it, its speed, the rest of a wait at a light, and the odometer."""

    segment_start: Waypoint
    along_m: float
    speed_ms: float
    wait_s: float
    odometer_km: float


class Drive:
    """A vehicle driving a `Route`: accelerates, cruises at 30–90 km/h, slows for turns, stops at lights.

    Pure and clock-free: `advance(dt_s)` moves the vehicle by `dt_s` seconds of simulated time. `place()`
    says where it is; a drive made with `resume=` that place continues from there (a restarted device).
    `advance(dt_s, halt=True)` pulls over: the vehicle brakes comfortably to a standstill and stays there
    until advanced without `halt` (a scenario's parked truck).
    """

    def __init__(
        self, route: Route, *, seed: int | str, odometer_km: float = 0.0, resume: DrivePlace | None = None
    ) -> None:
        self._route = route
        a = route.start() if resume is None else resume.segment_start
        # A resumed drive draws its driving (speeds, lights) afresh from where it resumed.
        self._rng = random.Random(f"drive:{seed}" if resume is None else f"drive:{seed}:{a.index}")  # noqa: S311
        self._a = a
        self._b = route.after(a)
        self._c = route.after(self._b)
        self._along_m = 0.0
        self._speed_ms = 0.0
        self._wait_s = 0.0
        self._odometer_m = odometer_km * 1000.0
        self._length_m = 1.0
        self._heading = 0.0
        self._shown_heading = 0.0  # the heading reported: kept while waiting at a light
        self._cruise_ms = CRUISE_MIN_KMH / 3.6
        self._turn_ms = TURN_SPEED_KMH / 3.6
        self._stop_at_end = False
        self._plan_segment()
        self._shown_heading = self._heading
        if resume is not None:
            self._along_m = min(max(resume.along_m, 0.0), self._length_m)
            self._speed_ms = max(resume.speed_ms, 0.0)
            self._wait_s = max(resume.wait_s, 0.0)
            self._odometer_m = resume.odometer_km * 1000.0

    def place(self) -> DrivePlace:
        """Where the vehicle is now, for `Drive(..., resume=)`."""
        return DrivePlace(self._a, self._along_m, self._speed_ms, self._wait_s, self._odometer_m / 1000.0)

    @property
    def odometer_km(self) -> float:
        """Distance driven so far, including the starting odometer reading."""
        return self._odometer_m / 1000.0

    def advance(self, dt_s: float, *, halt: bool = False) -> Motion:
        """Drive for `dt_s` seconds (≥ 0) and report where the vehicle is; with `halt`, stop and stay."""
        if dt_s < 0 or not math.isfinite(dt_s):
            raise ValueError(f"dt_s must be a finite number ≥ 0, got {dt_s}")
        remaining = dt_s
        while remaining > 0:
            step = min(remaining, MOTION_STEP_S)
            if halt:
                self._pull_over(step)
            else:
                self._tick(step)
            remaining -= step
        return self._motion()

    def _pull_over(self, dt: float) -> None:
        """Brake at a comfortable rate (no harsh braking) and stand still; the rest of a light's wait runs on."""
        self._wait_s = max(0.0, self._wait_s - dt)
        if self._speed_ms == 0.0:
            return
        self._speed_ms = max(0.0, self._speed_ms - BRAKE_MS2 * dt)
        moved = self._speed_ms * dt
        left_m = self._length_m - self._along_m
        if moved < left_m:
            self._along_m += moved
            self._odometer_m += moved
            return
        # Rolling through the intersection while slowing down: on to the next street.
        self._next_segment()
        self._along_m = min(moved - left_m, self._length_m * 0.5)
        self._odometer_m += left_m + self._along_m
        self._shown_heading = self._heading

    def _tick(self, dt: float) -> None:
        if self._wait_s > 0:
            self._wait_s -= dt
            self._speed_ms = 0.0
            return
        self._shown_heading = self._heading
        # Cruise speed wanders a little, like a driver's foot.
        self._cruise_ms = min(
            max(self._cruise_ms + self._rng.gauss(0.0, 0.15) * dt, CRUISE_MIN_KMH / 3.6), CRUISE_MAX_KMH / 3.6
        )
        left_m = self._length_m - self._along_m
        end_ms = 0.0 if self._stop_at_end else self._turn_ms
        # The fastest speed from which the vehicle can still brake to end_ms by the end of the segment.
        allowed = math.sqrt(end_ms * end_ms + 2.0 * BRAKE_MS2 * max(left_m, 0.0))
        target = max(min(self._cruise_ms, allowed), CREEP_SPEED_KMH / 3.6)
        if self._speed_ms < target:
            self._speed_ms = min(target, self._speed_ms + ACCEL_MS2 * dt)
        else:
            # Braking harder than comfortable is allowed when a light turns red late.
            self._speed_ms = max(target, self._speed_ms - 2.0 * BRAKE_MS2 * dt)
        moved = self._speed_ms * dt
        if self._along_m + moved < self._length_m:
            self._along_m += moved
            self._odometer_m += moved
            return
        self._odometer_m += left_m
        red_light = self._stop_at_end
        self._next_segment()
        if red_light:
            self._speed_ms = 0.0
            self._wait_s = self._rng.uniform(LIGHT_WAIT_MIN_S, LIGHT_WAIT_MAX_S)
        else:
            # Carry the rest of this tick's distance into the new segment.
            self._along_m = min(moved - left_m, self._length_m * 0.5)
            self._odometer_m += self._along_m

    def _next_segment(self) -> None:
        self._a, self._b, self._c = self._b, self._c, self._route.after(self._c)
        self._along_m = 0.0
        self._plan_segment()

    def _plan_segment(self) -> None:
        ax, ay = self._a.x, self._a.y
        bx, by = self._b.x, self._b.y
        cx, cy = self._c.x, self._c.y
        self._length_m = max(math.hypot(bx - ax, by - ay), 1e-3)
        self._heading = bearing_deg(bx - ax, by - ay)
        # Long streets are driven faster than short ones.
        base = CRUISE_MIN_KMH + (CRUISE_MAX_KMH - CRUISE_MIN_KMH) * min(self._length_m / 1500.0, 1.0)
        cruise = min(max(base + self._rng.gauss(0.0, 8.0), CRUISE_MIN_KMH), CRUISE_MAX_KMH)
        self._cruise_ms = cruise / 3.6
        turn = _angle_between(self._heading, bearing_deg(cx - bx, cy - by))
        # Straight through at cruise speed; a right-angle turn (or sharper) at turning speed.
        share = min(turn / 90.0, 1.0)
        self._turn_ms = (cruise + (TURN_SPEED_KMH - cruise) * share) / 3.6
        self._stop_at_end = self._rng.random() < LIGHT_CHANCE

    def _motion(self) -> Motion:
        ax, ay = self._a.x, self._a.y
        bx, by = self._b.x, self._b.y
        share = self._along_m / self._length_m
        position = self._route.to_geo(ax + (bx - ax) * share, ay + (by - ay) * share)
        return Motion(
            position=position,
            speed_kmh=self._speed_ms * 3.6,
            heading_deg=self._shown_heading,
            odometer_km=self._odometer_m / 1000.0,
            stopped=self._speed_ms == 0.0,
        )
