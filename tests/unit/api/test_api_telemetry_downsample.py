"""LTTB downsampling: the first and last points kept, never more than asked, time order preserved."""

from __future__ import annotations

import itertools
import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from api.telemetry.downsample import lttb

values = st.floats(min_value=-1e6, max_value=1e6, allow_nan=False)


@st.composite
def series(draw: st.DrawFn) -> tuple[list[float], list[float]]:
    gaps = draw(st.lists(st.floats(min_value=0, max_value=3600, allow_nan=False), min_size=0, max_size=400))
    xs = [0.0]
    for gap in gaps:
        xs.append(xs[-1] + gap)  # non-decreasing: equal times happen (bursts)
    ys = draw(st.lists(values, min_size=len(xs), max_size=len(xs)))
    return xs, ys


@given(series(), st.integers(min_value=2, max_value=500))
def test_lttb_keeps_first_and_last_at_most_threshold_in_time_order(
    data: tuple[list[float], list[float]], threshold: int
) -> None:
    xs, ys = data

    kept = lttb(xs, ys, threshold)

    assert len(kept) == min(threshold, len(xs))
    assert kept[0] == 0
    assert kept[-1] == len(xs) - 1
    assert all(a < b for a, b in itertools.pairwise(kept))  # strictly increasing indices
    assert all(xs[a] <= xs[b] for a, b in itertools.pairwise(kept))  # monotonic time


@given(series())
def test_lttb_returns_every_point_when_asked_for_as_many(data: tuple[list[float], list[float]]) -> None:
    xs, ys = data

    assert lttb(xs, ys, len(xs) + 1) == list(range(len(xs)))


def test_lttb_keeps_a_spike_that_every_nth_point_would_miss() -> None:
    xs = [float(i) for i in range(1000)]
    ys = [0.0] * 1000
    ys[537] = 100.0

    kept = lttb(xs, ys, 20)

    assert 537 in kept
    assert len(kept) == 20


def test_lttb_follows_a_sine_closely() -> None:
    xs = [i / 100 for i in range(10_000)]
    ys = [math.sin(x) for x in xs]

    kept = lttb(xs, ys, 200)

    peaks = [ys[i] for i in kept]
    assert max(peaks) > 0.999
    assert min(peaks) < -0.999


def test_lttb_of_two_points_is_the_ends() -> None:
    assert lttb([0.0, 1.0, 2.0, 3.0], [5.0, 9.0, 1.0, 2.0], 2) == [0, 3]
    assert lttb([], [], 5) == []


def test_lttb_refuses_a_threshold_below_two_and_mismatched_series() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        lttb([0.0, 1.0, 2.0], [0.0, 1.0, 2.0], 1)
    with pytest.raises(ValueError, match="differ"):
        lttb([0.0, 1.0], [0.0], 3)
