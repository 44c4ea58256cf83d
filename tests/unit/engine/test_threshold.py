"""The threshold state machine: durations, hysteresis, device-time order and restarts from a saved state."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from engine.threshold import IDLE, Cleared, Point, Raised, RuleState, SampleKey, evaluate
from models.rules import Condition, RuleSpec, rule_problem

T0 = datetime(2026, 12, 1, 8, 0, tzinfo=UTC)
HOT = Condition(op=">", threshold=110, for_s=30, clear_threshold=100, clear_for_s=60)


def series(*values: float, step_s: float = 10, start: int = 0) -> list[Point]:
    """One point every `step_s` seconds, seq counting from `start`."""
    return [
        Point(SampleKey(T0 + timedelta(seconds=(start + i) * step_s), 0, start + i), v) for i, v in enumerate(values)
    ]


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def test_threshold_raises_only_once_the_condition_held_for_its_duration() -> None:
    short = evaluate(HOT, IDLE, series(100, 115, 116, 117, 100))  # held 20 s: 10..30
    assert short.outcomes == []
    held = evaluate(HOT, IDLE, series(100, 115, 116, 117, 118, 119))  # held 10..40: 30 s at 40
    assert held.outcomes == [Raised(at(10), at(40), 118)]
    assert held.state == RuleState("active", at(10))


def test_threshold_clears_only_below_the_hysteresis_limit_for_the_clear_duration() -> None:
    raised = evaluate(HOT, IDLE, series(115, 115, 115, 115))
    # 105 is below the trigger but above the clear limit: still active; 99 for 60 s clears it.
    later = evaluate(HOT, raised.state, series(105, 105, 99, 99, 99, 99, 99, 99, 99, step_s=10, start=4))
    assert later.outcomes == [Cleared(at(0), at(120))]
    assert later.state == IDLE


def test_threshold_clear_duration_restarts_when_the_value_rises_into_the_band() -> None:
    raised = evaluate(HOT, IDLE, series(115, 115, 115, 115))
    wobble = evaluate(HOT, raised.state, series(99, 99, 99, 104, 99, 99, 99, 99, 99, 99, 99, start=4))
    # clearing began at 40, was broken at 70 (104), began again at 80 and held 60 s at 140
    assert wobble.outcomes == [Cleared(at(0), at(140))]


def test_threshold_zero_duration_raises_on_the_first_sample_and_outside_clears_inside() -> None:
    band = Condition(op="outside", low=10, high=20)
    result = evaluate(band, IDLE, series(15, 25, 26, 15, 5))
    assert result.outcomes == [Raised(at(10), at(10), 25), Cleared(at(10), at(30)), Raised(at(40), at(40), 5)]


def test_threshold_run_in_two_parts_from_the_saved_state_equals_one_run() -> None:
    values = [100, 115, 116, 117, 118, 119, 99, 99, 99, 99, 99, 99, 99, 99, 120, 121, 122, 123]
    whole = evaluate(HOT, IDLE, series(*values))
    for cut in range(1, len(values)):
        first = evaluate(HOT, IDLE, series(*values[:cut]))
        second = evaluate(HOT, first.state, series(*values[cut:], start=cut))
        assert first.outcomes + second.outcomes == whole.outcomes, cut
        assert second.state == whole.state


def test_threshold_late_sample_reevaluated_from_the_state_before_it_changes_the_episode() -> None:
    """What the store does for a late sample: restart from the last transition before it, with it in place."""
    on_time = series(100, 115, 116, 117, 118)  # 10..40 above: raised at 40
    assert evaluate(HOT, IDLE, on_time).outcomes == [Raised(at(10), at(40), 118)]
    late = Point(SampleKey(at(25), 0, 99), 90)  # a cool reading at 25 s arrives afterwards
    whole = sorted([*on_time, late], key=lambda p: p.key)
    first_pass = evaluate(HOT, IDLE, on_time)
    before = [(key, s) for key, s in first_pass.transitions if key.ts < late.key.ts]
    state = before[-1][1] if before else IDLE
    redo = evaluate(HOT, state, [p for p in whole if p.key.ts >= late.key.ts])
    assert redo.outcomes == []  # the run is broken at 25: 30..40 is only 10 s
    assert redo.state == RuleState("pending", at(30))


def test_rule_problem_names_unknown_metrics_and_durations_out_of_range() -> None:
    assert "unknown metric 'warp'" in (rule_problem(RuleSpec(name="x", metric="warp", op=">", threshold=1)) or "")
    too_long = RuleSpec(name="x", metric="engine_temp", op=">", threshold=110, for_s=86_401)
    assert "for_s 86401 is out of range" in (rule_problem(too_long) or "")
    upside_down = RuleSpec(name="x", metric="engine_temp", op=">", threshold=110, clear_threshold=120)
    assert "clear_threshold" in (rule_problem(upside_down) or "")
    assert rule_problem(RuleSpec(name="hot", metric="engine_temp", op=">", threshold=110, for_s=30)) is None
