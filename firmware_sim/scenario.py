"""Scenarios: simulated trucks that misbehave on purpose, so that an operator (or a test) sees what the
engine makes of it. Pure functions of the time since a truck's first sample; no MQTT, no clock.

| scenario | what the truck does, from `start_s` on |
|---|---|
| `overheat` | its engine temperature climbs to 118 °C in 15 s, stays there `for_s`, and cools back in 2 minutes |
| `fuel-theft` | it parks (engine off) for `for_s`; a minute after it stopped, 20 % of the tank drains in 90 s |
| `offline` | its device disconnects with its Last Will, buffers its samples, and comes back `for_s` later |
| `trip-with-stops` | it parks (engine off) for `for_s`, then drives on: a trip, a stop, a trip |
| `geofence` | it drives its route as ever; `fence_around` makes a circle on that route, which it reaches at `start_s` |

A `Scenario` says what it does to its truck at a moment as an `Effect`; `firmware_sim.truck` applies it
(the temperature, the parking, the fuel) and `firmware_sim.fleet` takes the device off the network.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Final, Literal, get_args

from firmware_sim.route import GeoPoint

ScenarioName = Literal["overheat", "geofence", "trip-with-stops", "fuel-theft", "offline"]
SCENARIOS: Final[tuple[ScenarioName, ...]] = get_args(ScenarioName)

OVERHEAT_PEAK_C: Final = 118.0
OVERHEAT_RISE_S: Final = 15.0
OVERHEAT_COOL_S: Final = 120.0
THEFT_PCT: Final = 20.0
THEFT_AFTER_PARKING_S: Final = 60.0  # the thieves wait until the driver has walked off
THEFT_DRAIN_S: Final = 90.0
FENCE_RADIUS_M: Final = 150.0

# When each scenario begins, and how long its misbehaviour lasts, unless told otherwise (seconds).
DEFAULT_START_S: Final[dict[ScenarioName, float]] = {
    "overheat": 10.0,
    "geofence": 120.0,  # time to add the printed fence before the truck gets there
    "trip-with-stops": 180.0,  # a first trip of about 2 km
    "fuel-theft": 60.0,
    "offline": 30.0,
}
DEFAULT_FOR_S: Final[dict[ScenarioName, float]] = {
    "overheat": 240.0,
    "geofence": 0.0,
    "trip-with-stops": 360.0,  # longer than the engine's 5 minutes of parking that end a trip
    "fuel-theft": 360.0,
    "offline": 660.0,  # past the 10 minutes of the default "truck offline" rule
}
DEMO_OFFLINE_START_S: Final = 20.0


@dataclass(frozen=True, slots=True)
class Effect:
    """What a scenario does to its truck at one moment; the defaults do nothing.

    `heat`: how far (0…1) the engine temperature is pulled from the truck's own towards `OVERHEAT_PEAK_C`.
    `parked`: the truck pulls over and stands with its engine off. `fuel_taken_pct`: % of the tank
    taken out by theft since the scenario began (cumulative). `offline`: the device is off the network.
    """

    heat: float = 0.0
    parked: bool = False
    fuel_taken_pct: float = 0.0
    offline: bool = False


CALM: Final = Effect()


@dataclass(frozen=True, slots=True)
class Scenario:
    """One truck's misbehaviour: `name`, beginning `start_s` after its first sample, lasting `for_s`."""

    name: ScenarioName
    start_s: float
    for_s: float

    def __post_init__(self) -> None:
        if self.name not in SCENARIOS:
            raise ValueError(f"unknown scenario {self.name!r}; known: {', '.join(SCENARIOS)}")
        if not self.start_s >= 0 or not self.for_s >= 0:
            raise ValueError("a scenario's start_s and for_s must be ≥ 0")

    def effect(self, t_s: float) -> Effect:
        """What the scenario does to its truck `t_s` seconds after the truck's first sample."""
        since = t_s - self.start_s
        if self.name == "overheat":
            return Effect(heat=heat_share(since, self.for_s))
        if self.name == "offline":
            return Effect(offline=0 <= since < self.for_s)
        if self.name == "trip-with-stops":
            return Effect(parked=0 <= since < self.for_s)
        if self.name == "fuel-theft":
            return Effect(parked=0 <= since < self.for_s, fuel_taken_pct=fuel_taken_pct(since, self.for_s))
        return CALM

    def describe(self) -> str:
        """The scenario in words, for a person starting it."""
        at, lasting = f"{self.start_s:g} s in", _duration(self.for_s)
        return {
            "overheat": f"overheats {at}: {OVERHEAT_PEAK_C:g} °C for {lasting}, then cools",
            "geofence": f"drives through the fence printed on stdout, {at}",
            "trip-with-stops": f"stops {at} for {lasting}, then drives on",
            "fuel-theft": f"parks {at} for {lasting}; {THEFT_PCT:g} % of its fuel is stolen while it stands",
            "offline": f"goes offline (Last Will) {at} for {lasting}",
        }[self.name]


def scenario(name: ScenarioName, *, start_s: float | None = None, for_s: float | None = None) -> Scenario:
    """The scenario `name`, with its default timing where none is given."""
    if name not in SCENARIOS:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(SCENARIOS)}")
    return Scenario(
        name,
        DEFAULT_START_S[name] if start_s is None else start_s,
        DEFAULT_FOR_S[name] if for_s is None else for_s,
    )


def heat_share(since_s: float, hold_s: float) -> float:
    """How far towards the overheat peak the engine is `since_s` after the overheat began: up in
    `OVERHEAT_RISE_S`, held `hold_s`, back down in `OVERHEAT_COOL_S` (0 before and after)."""
    if since_s <= 0:
        return 0.0
    if since_s < OVERHEAT_RISE_S:
        return since_s / OVERHEAT_RISE_S
    cooling_s = since_s - OVERHEAT_RISE_S - hold_s
    if cooling_s <= 0:
        return 1.0
    return max(0.0, 1.0 - cooling_s / OVERHEAT_COOL_S)


def overheated_c(normal_c: float, share: float) -> float:
    """The engine temperature read with `share` of an overheat on an engine that would read `normal_c`."""
    if share <= 0.0:
        return normal_c
    return normal_c + (OVERHEAT_PEAK_C - normal_c) * min(share, 1.0)


def fuel_taken_pct(since_s: float, parked_s: float) -> float:
    """% of the tank stolen by `since_s` after the truck parked for `parked_s`: none for a minute, then
    `THEFT_PCT` drained evenly over `THEFT_DRAIN_S`, cut short if the truck drives off first."""
    draining_s = min(since_s, parked_s) - THEFT_AFTER_PARKING_S
    return THEFT_PCT * min(max(draining_s / THEFT_DRAIN_S, 0.0), 1.0)


def fence_around(centre: GeoPoint, name: str, radius_m: float = FENCE_RADIUS_M) -> dict[str, Any]:
    """A circular fence as the geofence API takes it: a GeoJSON Feature, a Point with `radius_m`."""
    return {
        "type": "Feature",
        "properties": {"name": name, "radius_m": radius_m},
        "geometry": {"type": "Point", "coordinates": [round(centre.lon, 6), round(centre.lat, 6)]},
    }


def demo_plan(devices: int, seed: int | str) -> dict[int, Scenario]:
    """The misbehaving trucks of `fleet up`'s demo, by their place in the fleet (0-based), chosen by `seed`:
    one overheats from its first sample (the default rules alert on it within a minute), another goes
    offline shortly after the start for long enough to be alerted on as well."""
    # Deterministic simulation, not security: a seeded PRNG is the point.
    chosen = random.Random(f"demo:{seed}").sample(range(devices), min(devices, 2))  # noqa: S311
    plan = [scenario("overheat", start_s=0.0), scenario("offline", start_s=DEMO_OFFLINE_START_S)]
    return dict(zip(chosen, plan, strict=False))


def _duration(seconds: float) -> str:
    return f"{seconds / 60:g} min" if seconds >= 120 and seconds % 60 == 0 else f"{seconds:g} s"
