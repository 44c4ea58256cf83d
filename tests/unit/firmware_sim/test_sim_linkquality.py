"""Quality levels from the measured link speed, and the speed from the spacing of acknowledgements."""

from __future__ import annotations

import pytest

from firmware_sim.linkquality import (
    BASIC,
    FULL,
    MIN_DISPERSION_S,
    MINIMAL,
    STANDARD,
    UNKNOWN_LINK_BPS,
    LinkMeter,
    level_for,
)
from models.telemetry import Aggregate


@pytest.mark.parametrize(
    ("bps", "level"),
    [
        (5_000_000, FULL),
        (1_000_001, FULL),
        (1_000_000, STANDARD),
        (200_000, STANDARD),
        (50_000, BASIC),
        (10_001, BASIC),
        (10_000, MINIMAL),
        (1_000, MINIMAL),
    ],
)
def test_level_follows_the_thresholds(bps: float, level: object) -> None:
    assert level_for(bps) is level


def test_lower_levels_send_less_per_sensor() -> None:
    assert [lvl.window_s for lvl in (FULL, STANDARD, BASIC, MINIMAL)] == [1.0, 1.0, 5.0, 30.0]
    assert MINIMAL.kinds < FULL.kinds
    assert FULL.std
    assert not BASIC.std


def test_a_level_rounds_the_summary_keeping_its_order_and_drops_std_if_it_must() -> None:
    summary = Aggregate(min=1.23456, max=1.23461, avg=1.23459, count=100, std=0.0123)

    basic = BASIC.shape(summary)
    standard = STANDARD.shape(summary)

    assert (basic.min, basic.max, basic.avg, basic.count, basic.std) == (1.2, 1.2, 1.2, 100, None)
    assert (standard.avg, standard.std) == (1.23, 0.01)
    assert FULL.shape(summary) == summary


def _train(meter: LinkMeter, sizes: list[int], spacing_s: float, start: float = 0.0) -> float | None:
    train = meter.train(len(sizes))
    assert train is not None
    sample = None
    for i, size in enumerate(sizes):
        sample = meter.acked(train, size, start + i * spacing_s)
    return sample


def test_a_train_spaced_by_the_link_measures_the_link() -> None:
    meter = LinkMeter()
    # 1000-byte messages acknowledged 0.08 s apart: 100 kbit/s.
    sample = _train(meter, [1000] * 10, 0.08)

    assert sample == pytest.approx(100_000)
    assert meter.estimate_bps == pytest.approx(100_000)


def test_a_train_acknowledged_at_once_counts_as_fast_but_not_infinite() -> None:
    meter = LinkMeter()

    sample = _train(meter, [500] * 5, 0.0)

    assert sample == pytest.approx(4 * 500 * 8 / MIN_DISPERSION_S)


def test_the_estimate_is_the_median_of_recent_trains_so_one_outlier_moves_nothing() -> None:
    meter = LinkMeter(initial_bps=2_000_000)
    assert meter.estimate_bps == 2_000_000
    for t in range(4):
        _train(meter, [1000] * 5, 0.4, start=t * 10)  # 20 kbit/s
    _train(meter, [1000] * 5, 0.0001, start=50)  # one fast outlier

    assert meter.estimate_bps == pytest.approx(20_000)
    assert level_for(meter.estimate_bps) is BASIC


def test_short_or_broken_trains_measure_nothing() -> None:
    meter = LinkMeter()
    assert meter.train(2) is None
    train = meter.train(3)
    assert train is not None
    meter.acked(train, 100, 0.0)
    meter.abandon(train)

    assert meter.acked(train, 100, 1.0) is None
    assert meter.estimate_bps == UNKNOWN_LINK_BPS
    assert meter.samples == []
