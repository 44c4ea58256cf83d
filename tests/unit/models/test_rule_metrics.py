"""What a threshold rule may compare: every known metric, and the speed (overspeed)."""

from __future__ import annotations

import random

import msgspec

from models.rules import Condition, RuleSpec, rule_problem


def test_an_overspeed_rule_compares_the_speed_in_km_h_within_what_a_position_can_carry() -> None:
    overspeed = msgspec.convert(
        {"name": "overspeed", "metric": "speed", "op": ">", "threshold": 120, "for_s": 10, "severity": "major"},
        RuleSpec,
    )
    assert rule_problem(overspeed) is None
    absurd = msgspec.convert({"name": "x", "metric": "speed", "op": ">", "threshold": 900}, RuleSpec)
    assert rule_problem(absurd) == "900 is outside what speed can read (0 to 500 km/h)"


def test_an_unknown_metric_is_refused_naming_what_is_known_speed_included() -> None:
    problem = rule_problem(msgspec.convert({"name": "x", "metric": "warp", "op": ">", "threshold": 1}, RuleSpec))
    assert problem is not None
    assert problem.startswith("unknown metric 'warp'; known: fuel, engine_temp")
    assert problem.endswith(", speed")


def test_a_range_triggers_exactly_when_one_of_its_values_would() -> None:
    rng = random.Random(3)
    conditions = [
        Condition(op=">", threshold=110),
        Condition(op="<", threshold=10),
        Condition(op="outside", low=20, high=180),
        Condition(op="drop", threshold=15, window_s=300),
    ]
    for _ in range(2000):
        values = [rng.uniform(-50, 250) for _ in range(rng.randint(1, 6))]
        for condition in conditions:
            assert condition.triggers_within(min(values), max(values)) == any(condition.triggers(v) for v in values)
