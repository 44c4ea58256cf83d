"""The health score (models/health.py): each part takes points off up to its cap, and says why."""

from __future__ import annotations

import pytest

from models.health import HealthInputs, score, slope_per_day


def parts(inputs: HealthInputs) -> dict[str, float]:
    return {p.name: p.points for p in score(inputs).parts}


def test_a_quiet_device_online_all_week_scores_100() -> None:
    health = score(HealthInputs(open_alerts={}, online_share=1.0, engine_temp_daily=[88.0] * 10))
    assert health.score == 100.0
    assert all(p.points == 0 for p in health.parts)


def test_alerts_cost_by_severity_up_to_each_cap_and_the_largest_part_comes_first() -> None:
    health = score(HealthInputs(open_alerts={"critical": 3, "minor": 1}, online_share=1.0))
    assert health.parts[0].name == "open critical alerts"
    assert parts(HealthInputs(open_alerts={"critical": 3, "minor": 1}, online_share=1.0))["open critical alerts"] == 50
    assert health.score == 100 - 50 - 4


def test_time_offline_costs_up_to_twenty() -> None:
    assert parts(HealthInputs(open_alerts={}, online_share=0.75))["presence"] == 5.0
    assert parts(HealthInputs(open_alerts={}, online_share=0.0))["presence"] == 20.0
    assert parts(HealthInputs(open_alerts={}, online_share=None))["presence"] == 0.0


def test_a_rising_engine_temperature_baseline_costs_past_half_a_degree_a_day() -> None:
    rising = [80.0 + 2.0 * day for day in range(10)]  # +2 °C a day
    assert (
        parts(HealthInputs(open_alerts={}, online_share=1.0, engine_temp_daily=rising))["engine temperature trend"]
        == 15.0
    )
    gentle = [80.0 + 0.4 * day for day in range(10)]
    assert (
        parts(HealthInputs(open_alerts={}, online_share=1.0, engine_temp_daily=gentle))["engine temperature trend"] == 0
    )
    assert (
        parts(HealthInputs(open_alerts={}, online_share=1.0, engine_temp_daily=[80, 99, 120]))[
            "engine temperature trend"
        ]
        == 0
    ), "three days say nothing about a trend"


def test_a_vibration_level_rising_by_half_costs_fifteen_at_most() -> None:
    doubling = [1.0 + 0.1 * day for day in range(11)]  # +100 % over the days
    assert parts(HealthInputs(open_alerts={}, online_share=1.0, vibration_daily=doubling))["vibration trend"] == 15.0


def test_the_score_never_goes_below_zero() -> None:
    worst = HealthInputs(
        open_alerts={"critical": 9, "major": 9, "minor": 9, "warning": 9},
        online_share=0.0,
        engine_temp_daily=[60.0 + 5 * d for d in range(14)],
        vibration_daily=[1.0 + d for d in range(14)],
    )
    assert score(worst).score == 0.0


@pytest.mark.parametrize(("values", "expected"), [([1, 2, 3, 4], 1.0), ([4, 4, 4, 4], 0.0), ([1, 2], None)])
def test_slope_per_day(values: list[float], expected: float | None) -> None:
    assert slope_per_day(values) == expected


def test_services_due_cost_fifteen_each_up_to_thirty() -> None:
    assert parts(HealthInputs(open_alerts={}, online_share=1.0, services_due=1))["overdue maintenance"] == 15.0
    assert parts(HealthInputs(open_alerts={}, online_share=1.0, services_due=3))["overdue maintenance"] == 30.0
