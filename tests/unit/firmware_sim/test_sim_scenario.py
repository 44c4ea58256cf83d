"""Scenarios: the pure timing functions, and trucks that misbehave as they say, in a way the engine's own
pure evaluations (threshold rules, trips) detect."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from config.settings import SimSettings
from engine.fall import Reading, falls
from engine.fence_index import FenceIndex
from engine.geofence import fence_events
from engine.threshold import IDLE, Cleared, Point, Raised, SampleKey, evaluate
from engine.track import from_sample
from engine.trips import trips_and_stops
from firmware_sim.cli import build_parser, main, scenarios_of
from firmware_sim.route import GeoPoint
from firmware_sim.scenario import (
    CALM,
    OVERHEAT_COOL_S,
    OVERHEAT_PEAK_C,
    OVERHEAT_RISE_S,
    THEFT_PCT,
    Effect,
    Scenario,
    demo_plan,
    fence_around,
    fuel_taken_pct,
    heat_share,
    overheated_c,
    scenario,
)
from firmware_sim.truck import HARSH_BRAKING, Truck
from models.default_rules import DEFAULT_RULES
from models.earth import haversine_m
from models.events import IGNITION
from models.fences.geojson import FenceRejected, parse_fence
from models.rules import RuleSpec, condition_of
from models.telemetry import Sample

START = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def _drive(truck: Truck, steps: int) -> list[Sample]:
    return [truck.step(START + timedelta(seconds=i), 1.0) for i in range(steps)]


def _rule(name: str) -> RuleSpec:
    return next(spec for spec in DEFAULT_RULES if spec.name == name)


def test_scenario_heat_rises_holds_and_cools_back_to_nothing() -> None:
    hold = 100.0
    assert heat_share(-5, hold) == 0.0
    assert heat_share(0, hold) == 0.0
    assert heat_share(OVERHEAT_RISE_S / 2, hold) == pytest.approx(0.5)
    assert heat_share(OVERHEAT_RISE_S, hold) == 1.0
    assert heat_share(OVERHEAT_RISE_S + hold, hold) == 1.0
    assert heat_share(OVERHEAT_RISE_S + hold + OVERHEAT_COOL_S / 4, hold) == pytest.approx(0.75)
    assert heat_share(OVERHEAT_RISE_S + hold + OVERHEAT_COOL_S, hold) == 0.0
    assert heat_share(10_000, hold) == 0.0


def test_scenario_overheated_temperature_is_the_truck_own_without_heat_and_the_peak_with_all_of_it() -> None:
    assert overheated_c(91.3, 0.0) == 91.3
    assert overheated_c(91.3, 1.0) == OVERHEAT_PEAK_C
    assert overheated_c(90.0, 0.5) == pytest.approx((90.0 + OVERHEAT_PEAK_C) / 2)


def test_scenario_fuel_is_stolen_a_minute_after_parking_and_only_while_parked() -> None:
    assert fuel_taken_pct(-10, 360) == 0.0
    assert fuel_taken_pct(60, 360) == 0.0
    assert fuel_taken_pct(105, 360) == pytest.approx(THEFT_PCT / 2)
    assert fuel_taken_pct(150, 360) == THEFT_PCT
    assert fuel_taken_pct(1_000, 360) == THEFT_PCT
    # The truck drove off halfway through: the theft stops there.
    assert fuel_taken_pct(1_000, 105) == pytest.approx(THEFT_PCT / 2)


def test_scenario_effects_follow_the_timing_of_each_scenario() -> None:
    offline = Scenario("offline", start_s=30, for_s=60)
    assert [offline.effect(t).offline for t in (29, 30, 89, 90)] == [False, True, True, False]
    stops = Scenario("trip-with-stops", start_s=10, for_s=300)
    assert [stops.effect(t).parked for t in (9, 10, 309, 310)] == [False, True, True, False]
    theft = Scenario("fuel-theft", start_s=0, for_s=360)
    assert theft.effect(200) == Effect(parked=True, fuel_taken_pct=THEFT_PCT)
    assert Scenario("geofence", start_s=0, for_s=0).effect(50) == CALM
    assert scenario("overheat") == Scenario("overheat", 10.0, 240.0)
    assert scenario("offline", for_s=5).for_s == 5


@pytest.mark.parametrize(("name", "start", "lasting"), [("warp", 0, 0), ("overheat", -1, 0), ("offline", 0, -1)])
def test_scenario_refuses_an_unknown_name_or_negative_times(name: str, start: float, lasting: float) -> None:
    with pytest.raises(ValueError, match=r"unknown scenario|must be ≥ 0"):
        Scenario(name, start, lasting)  # type: ignore[arg-type]


def test_scenario_overheating_truck_raises_exactly_one_default_alert_which_clears() -> None:
    played = Scenario("overheat", start_s=300, for_s=120)  # a warm engine first
    samples = _drive(Truck("truck-0001", seed=7, scenario=played), 300 + 15 + 120 + 120 + 180)
    temps = [s.metrics["engine_temp"] for s in samples]
    assert max(temps[:300]) < 100
    assert all(t > 115 for t in temps[315:435])
    assert temps[-1] < 100
    points = [Point(SampleKey(s.ts, 0, s.seq), s.metrics["engine_temp"]) for s in samples]
    outcomes = evaluate(condition_of(_rule("engine overheating")), IDLE, points).outcomes
    assert [type(o) for o in outcomes] == [Raised, Cleared]


def test_scenario_calm_truck_measures_exactly_what_a_truck_without_a_scenario_does() -> None:
    calm = _drive(Truck("truck-0001", seed=7, scenario=Scenario("geofence", 60, 0)), 600)
    assert calm == _drive(Truck("truck-0001", seed=7), 600)


def test_scenario_fuel_theft_truck_parks_gently_and_loses_a_fifth_of_its_tank_within_two_minutes() -> None:
    truck = Truck("truck-0002", seed=7, scenario=Scenario("fuel-theft", start_s=120, for_s=360))
    samples = _drive(truck, 120 + 360 + 60)
    events = truck.take_events()
    assert HARSH_BRAKING not in {e.name for e in events if 115 <= (e.ts - START).total_seconds() <= 160}
    parked = samples[160:480]  # a truck at speed needs a few seconds to stop
    assert all(s.pos is not None and s.pos.speed == 0.0 for s in parked)
    fuel = [s.metrics["fuel"] for s in samples]
    assert fuel[120 + 60] - fuel[120 + 60 + 120] == pytest.approx(THEFT_PCT, abs=1.0)
    assert max(fuel[300:480]) < fuel[170] - THEFT_PCT + 1.0
    ignition = [(round((e.ts - START).total_seconds()), e.data["on"]) for e in events if e.name == IGNITION]
    assert [on for _, on in ignition] == [True, False, True]
    assert 120 <= ignition[1][0] <= 160
    assert ignition[2][0] == 480


def test_scenario_fuel_theft_raises_exactly_one_default_theft_alert_and_driving_raises_none() -> None:
    rule = _rule("fuel theft")
    assert rule.window_s is not None
    samples = _drive(Truck("truck-0002", seed=7, scenario=Scenario("fuel-theft", start_s=120, for_s=360)), 540)
    readings = [
        Reading(SampleKey(s.ts, 0, s.seq), s.metrics["fuel"], s.pos.speed if s.pos is not None else None)
        for s in samples
    ]
    outcomes = evaluate(condition_of(rule), IDLE, falls([], readings, rule.window_s, while_parked=True)).outcomes
    raised = [o for o in outcomes if isinstance(o, Raised)]
    assert len(raised) == 1
    assert 180 <= (raised[0].started_at - START).total_seconds() <= 270  # during the drain, not while driving
    calm = _drive(Truck("truck-0002", seed=7), 540)
    calm_readings = [
        Reading(SampleKey(s.ts, 0, s.seq), s.metrics["fuel"], s.pos.speed if s.pos is not None else None) for s in calm
    ]
    assert evaluate(condition_of(rule), IDLE, falls([], calm_readings, rule.window_s, while_parked=True)).outcomes == []


def test_scenario_trip_with_stops_gives_the_engine_two_trips_and_a_stop_between() -> None:
    truck = Truck("truck-0003", seed=7, scenario=Scenario("trip-with-stops", start_s=180, for_s=360))
    points = [p for s in _drive(truck, 180 + 360 + 300) if (p := from_sample(s)) is not None]
    report = trips_and_stops("truck-0003", points)
    assert len(report.trips) == 2
    between = [s for s in report.stops if report.trips[0].end_at <= s.start_at < report.trips[1].start_at]
    assert len(between) == 1
    assert (between[0].end_at - between[0].start_at).total_seconds() >= 300


def test_scenario_geofence_fence_lies_on_the_route_and_the_engine_sees_the_truck_enter_and_leave() -> None:
    truck = Truck("truck-0004", seed=7, scenario=Scenario("geofence", start_s=120, for_s=0))
    twin = Truck("truck-0004", seed=7)
    centre = truck.route_ahead(120, 1.0)
    fence = fence_around(centre, "crossing")
    samples = _drive(truck, 400)
    assert samples == _drive(twin, 400)  # looking ahead moved nothing
    distances = [haversine_m(s.pos.lat, s.pos.lon, centre.lat, centre.lon) for s in samples if s.pos is not None]
    assert min(distances) < 10  # GNSS noise
    parsed = parse_fence("1", fence)
    assert not isinstance(parsed, FenceRejected)
    points = [p for s in samples if (p := from_sample(s)) is not None]
    events, _ = fence_events("truck-0004", points, FenceIndex([parsed], tolerance_m=20))
    assert [(e.kind, e.crossed) for e in events] == [("enter", True), ("exit", True)]
    assert (events[0].at - START).total_seconds() < 120 < (events[1].at - START).total_seconds()


def test_scenario_fence_is_a_circle_feature_lon_first() -> None:
    fence = fence_around(GeoPoint(52.5, 13.4), "x", 200)
    assert fence["geometry"] == {"type": "Point", "coordinates": [13.4, 52.5]}
    assert fence["properties"] == {"name": "x", "radius_m": 200}


def test_scenario_demo_plan_picks_two_trucks_by_seed_one_overheating_one_offline() -> None:
    plan = demo_plan(20, 7)
    assert plan == demo_plan(20, 7)
    assert sorted(p.name for p in plan.values()) == ["offline", "overheat"]
    assert all(0 <= i < 20 for i in plan)
    assert plan != demo_plan(20, 8) or demo_plan(20, 9) != plan
    overheat = next(p for p in plan.values() if p.name == "overheat")
    assert overheat.start_s == 0
    offline = next(p for p in plan.values() if p.name == "offline")
    assert offline.for_s > next(r for r in DEFAULT_RULES if r.op == "offline").for_s
    assert [p.name for p in demo_plan(1, 7).values()] == ["overheat"]
    assert demo_plan(0, 7) == {}


def test_scenario_cli_plays_the_scenario_on_the_first_trucks_or_the_demo() -> None:
    parser = build_parser(SimSettings())
    args = parser.parse_args(["--scenario", "offline", "--scenario-devices", "2", "--scenario-for", "90"])
    assert scenarios_of(args) == {0: Scenario("offline", 30.0, 90.0), 1: Scenario("offline", 30.0, 90.0)}
    assert scenarios_of(parser.parse_args(["--demo", "--devices", "20"])) == demo_plan(20, 7)
    assert scenarios_of(parser.parse_args([])) == {}


@pytest.mark.parametrize(
    "argv",
    [
        ["--demo", "--scenario", "overheat"],
        ["--scenario-at", "5"],
        ["--scenario", "overheat", "--scenario-devices", "3", "--devices", "2"],
        ["--scenario", "melt"],
    ],
)
def test_scenario_cli_refuses_contradictions_with_status_2(argv: list[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--url", "mqtt://127.0.0.1:1", *argv])
    assert exc.value.code == 2
