"""The device model of a truck: what its telematics unit measures, one `Sample` per step. No MQTT here.

A truck drives a generated route (`route.Drive`) and reports position, speed, heading and GNSS quality,
plus three metrics: `fuel` (%; falls with distance and idling, refuelled at 10 %), `engine_temp` (°C;
a cold engine warms towards ~90 °C and then moves with load) and `odometer` (km). The clock is passed
in, so the same seed and the same steps always give the same samples, and tests need no sleeps.

Besides samples a truck has events (`take_events()`): `ignition` on (`{"on": true}`) at its first step and
off (`ignition_off()`) when it is parked at the end of a run, and `harsh_braking` (`{"decel_ms2": …}`) when
it slowed by more than `HARSH_BRAKING_MS2` on average between two steps (a light that turned red late).

A truck given a `Scenario` (`firmware_sim.scenario`) misbehaves as it says, by the time since its first
sample: it overheats, or pulls over and stands with its engine off (ignition off, then on when it drives
on), or loses fuel while parked; `offline` tells the fleet when its device is to be off the network.

`place()` is what a truck keeps in its flash to carry on after a restart (where it is on its route, its
odometer and fuel); a truck made with `resume=` that place continues its route from there instead of
jumping back to the start.
"""

from __future__ import annotations

import copy
import math
import random
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import msgspec

from firmware_sim.route import DEFAULT_CENTRE, Drive, DrivePlace, GeoPoint, Route
from firmware_sim.scenario import CALM, Effect, Scenario, overheated_c
from models.events import IGNITION
from models.telemetry import Position, Sample

TANK_L: Final = 400.0
CONSUMPTION_L_PER_KM: Final = 0.32
IDLE_L_PER_H: Final = 2.5
REFUEL_BELOW_PCT: Final = 10.0
ENGINE_WARM_C: Final = 90.0
ENGINE_TIME_CONSTANT_S: Final = 240.0
BASE_ALTITUDE_M: Final = 34.0
GNSS_GOOD_ACCURACY_M: Final = 2.5
READINGS_PER_SAMPLE: Final = 4  # the position and three metrics
HARSH_BRAKING: Final = "harsh_braking"
HARSH_BRAKING_MS2: Final = 3.0  # a loaded truck brakes at about 1.8 m/s²; harder is reported


@dataclass(frozen=True, slots=True)
class TruckEvent:
    """A discrete event of the truck at device time `ts` (`models.events.Event` without its numbering)."""

    name: str
    ts: datetime
    data: dict[str, Any]


class TruckPlace(msgspec.Struct, frozen=True):
    """What a truck saves to continue after a restart: its place on its route and its fuel level."""

    drive: DrivePlace
    fuel_pct: float


_PLACE = msgspec.json.Decoder(TruckPlace)
_encode_place = msgspec.json.Encoder().encode


def encode_place(place: TruckPlace) -> bytes:
    """`place` as the bytes a device stores."""
    return _encode_place(place)


def decode_place(data: bytes) -> TruckPlace | None:
    """The place saved by `encode_place`; None when `data` is not one (another simulator version)."""
    try:
        return _PLACE.decode(data)
    except msgspec.DecodeError:
        return None


class Truck:
    """One simulated truck. `step()` advances it and returns its next sample; `seq` counts from `first_seq`.

    With `resume`, the truck continues from a saved `place()`: same route, same spot, odometer and fuel.
    """

    def __init__(
        self,
        device_id: str,
        *,
        seed: int | str = 0,
        boot: int = 0,
        first_seq: int = 0,
        centre: GeoPoint = DEFAULT_CENTRE,
        fuel_pct: float | None = None,
        odometer_km: float | None = None,
        resume: TruckPlace | None = None,
        scenario: Scenario | None = None,
    ) -> None:
        self.device_id = device_id
        self.scenario = scenario
        self.boot = boot
        self._seq = first_seq
        key = f"{seed}:{device_id}"
        # Deterministic simulation, not security: a seeded PRNG is the point.
        self._rng = rng = random.Random(f"truck:{key}")  # noqa: S311
        start_km = odometer_km if odometer_km is not None else rng.uniform(5_000.0, 600_000.0)
        self._drive = Drive(
            Route(key, centre=centre), seed=key, odometer_km=start_km, resume=None if resume is None else resume.drive
        )
        self._fuel_pct = fuel_pct if fuel_pct is not None else rng.uniform(35.0, 100.0)
        if resume is not None:
            self._fuel_pct = _clamp(resume.fuel_pct, 0.0, 100.0)
        self._ambient_c = rng.uniform(2.0, 28.0)
        self._engine_c = self._ambient_c + rng.uniform(0.0, 3.0)  # every boot starts with a cold engine
        self._engine_wander_c = 0.0
        self._gnss_degraded_s = 0.0  # time left in an urban canyon or under a bridge
        self._last_odometer_km = self._drive.odometer_km
        self._last_speed_ms = 0.0
        self._events: list[TruckEvent] = []
        self._ignition_on = False
        self._elapsed_s = 0.0  # since the first sample: the scenario's clock
        self._effect = CALM
        self._engine_off = False  # parked by the scenario, engine off
        self._fuel_taken_pct = 0.0
        # Set by the `immobilise` command: the truck comes to a stop, the engine goes off and stays off.
        self.immobilised = False

    def restart(self, boot: int) -> None:
        """The device rebooted: samples from now on carry `boot`, counting `seq` from zero again."""
        self.boot = boot
        self._seq = 0

    @property
    def next_seq(self) -> int:
        """The `seq` the next sample will carry."""
        return self._seq

    def place(self) -> TruckPlace:
        """Where the truck is now and how full its tank: `Truck(..., resume=)` continues from here."""
        return TruckPlace(self._drive.place(), self._fuel_pct)

    @property
    def offline(self) -> bool:
        """Whether its scenario has the device off the network as of the last sample."""
        return self._effect.offline

    def route_ahead(self, after_s: float, dt_s: float) -> GeoPoint:
        """Where on its route the truck will be `after_s` seconds from now, stepped `dt_s` at a time as the
        fleet steps it (a look-ahead on a copy: the truck itself does not move)."""
        drive = copy.deepcopy(self._drive)
        position = drive.advance(0.0).position
        steps = math.ceil(after_s / dt_s) if dt_s > 0 else 0
        for _ in range(steps):
            position = drive.advance(dt_s).position
        return position

    def step(self, now: datetime, dt_s: float) -> Sample:
        """Advance the truck by `dt_s` seconds and return what it measured at device time `now`."""
        effect = self._effect = CALM if self.scenario is None else self.scenario.effect(self._elapsed_s)
        self._elapsed_s += dt_s
        parked = effect.parked or self.immobilised
        if self._engine_off and not parked:
            self._engine_off = False  # the driver is back: the ignition goes on below
        if not self._ignition_on and not self._engine_off:
            self._ignition_on = True
            self._events.append(TruckEvent(IGNITION, now, {"on": True}))
        motion = self._drive.advance(dt_s, halt=parked)
        if parked and motion.stopped and self._ignition_on:
            self._ignition_on = False
            self._engine_off = True
            self._events.append(TruckEvent(IGNITION, now, {"on": False}))
        speed_ms = motion.speed_kmh / 3.6
        if dt_s > 0 and (self._last_speed_ms - speed_ms) / dt_s >= HARSH_BRAKING_MS2:
            decel = round((self._last_speed_ms - speed_ms) / dt_s, 1)
            self._events.append(TruckEvent(HARSH_BRAKING, now, {"decel_ms2": decel}))
        self._last_speed_ms = speed_ms
        driven_km = motion.odometer_km - self._last_odometer_km
        self._last_odometer_km = motion.odometer_km
        self._burn_fuel(driven_km, dt_s)
        self._steal_fuel(effect)
        self._heat_engine(motion.speed_kmh, dt_s)
        quality, accuracy_m = self._gnss(dt_s)
        sample = Sample(
            seq=self._seq,
            ts=now,
            boot=self.boot,
            pos=self._position(motion.position, motion.speed_kmh, motion.heading_deg, accuracy_m),
            metrics={
                # Fuel sloshes in the tank: the level sensor reads a little around the true level.
                "fuel": round(_clamp(self._fuel_pct + self._rng.gauss(0.0, 0.2), 0.0, 100.0), 1),
                "engine_temp": round(
                    _clamp(overheated_c(self._engine_c, effect.heat) + self._rng.gauss(0.0, 0.3), -40.0, 150.0), 1
                ),
                "odometer": round(motion.odometer_km, 3),
            },
            quality=quality,
        )
        self._seq += 1
        return sample

    def take_events(self) -> list[TruckEvent]:
        """The events since the last call, oldest first."""
        events, self._events = self._events, []
        return events

    def ignition_off(self, now: datetime) -> TruckEvent | None:
        """Park the truck: the `ignition` off event, or None when it never started."""
        if not self._ignition_on:
            return None
        self._ignition_on = False
        self._last_speed_ms = 0.0
        return TruckEvent(IGNITION, now, {"on": False})

    def _burn_fuel(self, driven_km: float, dt_s: float) -> None:
        idle_l = 0.0 if self._engine_off else IDLE_L_PER_H * dt_s / 3600.0
        used_l = driven_km * CONSUMPTION_L_PER_KM + idle_l
        self._fuel_pct -= used_l / TANK_L * 100.0
        if self._fuel_pct <= REFUEL_BELOW_PCT:
            self._fuel_pct = self._rng.uniform(92.0, 100.0)

    def _steal_fuel(self, effect: Effect) -> None:
        """Take out what the scenario's theft took since the last sample (never below an empty tank)."""
        taken = effect.fuel_taken_pct - self._fuel_taken_pct
        if taken > 0:
            self._fuel_pct = max(0.0, self._fuel_pct - taken)
            self._fuel_taken_pct = effect.fuel_taken_pct

    def _heat_engine(self, speed_kmh: float, dt_s: float) -> None:
        # Thermostat target, a little higher under load, plus a slow random wander (traffic, weather);
        # a parked engine that is off cools towards the air around it.
        self._engine_wander_c = _clamp(self._engine_wander_c + self._rng.gauss(0.0, 0.05) * dt_s, -3.0, 3.0)
        target = ENGINE_WARM_C + 4.0 * speed_kmh / 90.0 + self._engine_wander_c
        if self._engine_off:
            target = self._ambient_c
        blend = 1.0 - math.exp(-dt_s / ENGINE_TIME_CONSTANT_S)
        self._engine_c += (target - self._engine_c) * blend

    def _gnss(self, dt_s: float) -> tuple[int, float]:
        """Fix quality (0–100) and accuracy (m): mostly good, with spells of urban-canyon degradation."""
        if self._gnss_degraded_s > 0:
            self._gnss_degraded_s -= dt_s
            quality = int(_clamp(self._rng.gauss(60.0, 10.0), 20.0, 85.0))
        else:
            # About one spell per 10 minutes, lasting 5–60 s.
            if self._rng.random() < dt_s / 600.0:
                self._gnss_degraded_s = self._rng.uniform(5.0, 60.0)
            quality = int(_clamp(self._rng.gauss(96.0, 2.0), 88.0, 100.0))
        accuracy_m = GNSS_GOOD_ACCURACY_M + (100 - quality) * 0.4 + abs(self._rng.gauss(0.0, 0.5))
        return quality, round(accuracy_m, 1)

    def _position(self, true: GeoPoint, speed_kmh: float, heading_deg: float, accuracy_m: float) -> Position:
        noise_m = accuracy_m / 2.0
        lat = true.lat + self._rng.gauss(0.0, noise_m) / 111_320.0
        lon = true.lon + self._rng.gauss(0.0, noise_m) / (111_320.0 * math.cos(math.radians(true.lat)))
        alt = BASE_ALTITUDE_M + 12.0 * math.sin(self._last_odometer_km / 3.0) + self._rng.gauss(0.0, noise_m)
        measured_speed = speed_kmh + self._rng.gauss(0.0, 0.4) if speed_kmh > 0 else 0.0
        heading = round(heading_deg, 1)
        return Position(
            lat=round(lat, 6),
            lon=round(lon, 6),
            alt=round(alt, 1),
            speed=round(_clamp(measured_speed, 0.0, 500.0), 1),
            heading=0.0 if heading >= 360.0 else heading,
            accuracy=accuracy_m,
        )


def _clamp(value: float, low: float, high: float) -> float:
    return min(max(value, low), high)
