"""The fall over a trailing window, the signal of a `drop` rule (fuel theft), and its validation."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from engine.fall import Reading, falls
from engine.threshold import IDLE, Raised, SampleKey, evaluate
from models.rules import RuleSpec, condition_of, rule_problem

T0 = datetime(2026, 12, 7, 2, 0, tzinfo=UTC)


def reading(second: int, value: float, speed: float | None = 0.0) -> Reading:
    return Reading(SampleKey(T0 + timedelta(seconds=second), 0, second), value, speed)


def test_the_fall_is_measured_from_the_highest_reading_of_the_window_before_each_sample() -> None:
    readings = [reading(s, v) for s, v in ((0, 60.0), (60, 59.9), (120, 55.0), (180, 48.0), (240, 41.0), (900, 41.0))]
    points = falls(readings[:1], readings[1:], 300, while_parked=False)
    assert [round(p.value, 1) for p in points] == [0.1, 5.0, 12.0, 19.0, 0.0]


def test_history_before_the_first_new_sample_counts_and_while_parked_only_standing_readings_do() -> None:
    history = [reading(0, 62.0, speed=50.0), reading(30, 61.8, speed=0.0)]
    new = [reading(90, 61.7, speed=0.2), reading(150, 50.0, speed=0.0), reading(160, 49.0, speed=30.0)]
    parked = falls(history, new, 600, while_parked=True)
    # Against the parked level (61.8), not the one driven in with; the moving sample is not evaluated.
    assert [(p.key.seq, round(p.value, 1)) for p in parked] == [(90, 0.1), (150, 11.8)]
    anyway = falls(history, new, 600, while_parked=False)
    assert [(p.key.seq, round(p.value, 1)) for p in anyway] == [(90, 0.3), (150, 12.0), (160, 13.0)]


def test_a_theft_while_parked_raises_once_and_normal_consumption_while_driving_does_not() -> None:
    spec = msgspec.convert(
        {"name": "theft", "metric": "fuel", "op": "drop", "threshold": 10, "window_s": 600, "while_parked": True},
        RuleSpec,
    )
    assert rule_problem(spec) is None
    condition = condition_of(spec)
    driving = [reading(10 * s, 80.0 - 0.05 * s, speed=60.0) for s in range(120)]  # 6 % in 20 min, moving
    parked = [reading(1200 + 10 * s, 74.0 - (1.0 * s if s < 20 else 20.0), speed=0.0) for s in range(60)]
    points = falls(driving[:1], driving[1:] + parked, 600, while_parked=True)
    result = evaluate(condition, IDLE, points)
    raised = [o for o in result.outcomes if isinstance(o, Raised)]
    assert len(raised) == 1
    assert raised[0].started_at == T0 + timedelta(seconds=1200 + 110)  # the first sample more than 10 below
    assert condition.describe("fuel") == "fuel fell more than 10 within 600 s while parked"


@pytest.mark.parametrize(
    ("fields", "reason"),
    [
        ({"threshold": 10}, "window_s from 1 to 86400"),
        ({"threshold": 0, "window_s": 600}, "must be above 0"),
        ({"threshold": 150, "window_s": 600}, "at most 100"),
        ({"low": 1, "high": 2, "window_s": 600}, "not low and high"),
        ({"threshold": 10, "window_s": 600, "clear_threshold": 20}, "from 0 to threshold 10"),
    ],
)
def test_drop_rules_are_refused_with_a_reason(fields: dict[str, object], reason: str) -> None:
    spec = msgspec.convert({"name": "theft", "metric": "fuel", "op": "drop"} | fields, RuleSpec)
    problem = rule_problem(spec)
    assert problem is not None
    assert reason in problem


def test_window_and_parked_belong_to_drop_rules_only() -> None:
    spec = msgspec.convert({"name": "x", "metric": "fuel", "op": "<", "threshold": 10, "window_s": 60}, RuleSpec)
    assert rule_problem(spec) == "window_s and while_parked belong to op 'drop'"
