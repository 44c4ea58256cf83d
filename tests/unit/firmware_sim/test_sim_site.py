"""A site's sensors and their one-second windows: rates, values in range, and exact summaries."""

from __future__ import annotations

import math
import statistics
from datetime import UTC, datetime

import pytest

from firmware_sim.site import (
    NATIVE_RATES_HZ,
    Window,
    gateway_id,
    open_window,
    reading_times,
    site_sensors,
    window_start,
    window_ts,
)
from models.telemetry import KNOWN_METRICS


def test_a_site_has_each_kind_at_its_native_rate_under_ids_of_the_site() -> None:
    sensors = site_sensors("quarry", per_kind=2)

    assert [s.device_id for s in sensors[:3]] == ["quarry-vibration-1", "quarry-vibration-2", "quarry-pressure-1"]
    assert {s.kind: s.rate_hz for s in sensors} == {
        "vibration": 100.0,
        "pressure": 10.0,
        "temperature": 1.0,
        "flow": 1.0,
        "level": 0.1,
    }
    assert len(sensors) == 2 * len(NATIVE_RATES_HZ)
    assert gateway_id("quarry") == "quarry-gw"


@pytest.mark.parametrize(("kind", "per_second"), [("vibration", 100), ("pressure", 10), ("temperature", 1)])
def test_a_sensor_is_read_its_rate_times_a_second_on_a_fixed_grid(kind: str, per_second: int) -> None:
    sensor = next(s for s in site_sensors("s") if s.kind == kind)

    times = reading_times(sensor, 1000.0, 1001.0)
    halves = reading_times(sensor, 1000.0, 1000.5) + reading_times(sensor, 1000.5, 1001.0)

    assert len(times) == per_second
    assert times == halves  # ticks of any length read the same instants, none twice
    assert times[0] == pytest.approx(1000.0)


def test_a_level_sensor_reads_once_every_ten_seconds() -> None:
    sensor = next(s for s in site_sensors("s") if s.kind == "level")

    assert len(reading_times(sensor, 1000.0, 1030.0)) == 3


def test_values_stay_within_each_metrics_physical_range_and_repeat_for_the_same_instant() -> None:
    for sensor in site_sensors("s", per_kind=3, seed=4):
        spec = KNOWN_METRICS[sensor.kind]
        values = [sensor.value(1_700_000_000 + i * 0.37) for i in range(2000)]
        assert all(spec.low <= v <= spec.high for v in values), sensor.kind
        assert len(set(values)) > 100  # it varies
        assert sensor.value(1_700_000_000.5) == sensor.value(1_700_000_000.5)


def test_a_window_summarises_its_readings_exactly() -> None:
    readings = [3.0, 7.5, 1.25, 9.0, 4.0]
    window = Window(10.0, 11.0)
    for value in readings:
        window.add(value)

    summary = window.summary()

    assert (summary.min, summary.max, summary.count) == (1.25, 9.0, 5)
    assert summary.avg == pytest.approx(statistics.fmean(readings))
    assert summary.std == pytest.approx(statistics.pstdev(readings))


def test_a_window_of_equal_readings_keeps_avg_within_min_and_max_and_std_zero() -> None:
    window = Window(0.0, 1.0)
    for _ in range(100):
        window.add(0.1)

    summary = window.summary()

    assert summary.min <= summary.avg <= summary.max
    assert summary.std == 0.0


def test_an_empty_window_has_no_summary() -> None:
    with pytest.raises(ValueError, match="empty"):
        Window(0.0, 1.0).summary()


def test_windows_start_on_whole_multiples_of_their_length_in_utc() -> None:
    assert window_start(1000.99) == 1000.0
    assert window_start(1004.2, 5.0) == 1000.0
    assert window_start(1001.0) == 1001.0
    assert window_ts(1_700_000_000.0) == datetime(2023, 11, 14, 22, 13, 20, tzinfo=UTC)
    assert not math.isnan(window_start(0.0))


def test_after_a_change_of_length_the_first_window_is_cut_short_so_windows_never_overlap() -> None:
    one_second = open_window(1002.3, 1.0)
    five_seconds = open_window(1003.4, 5.0, after_s=one_second.end_s)
    next_one = open_window(1005.0, 5.0, after_s=five_seconds.end_s)

    assert (one_second.start_s, one_second.end_s) == (1002.0, 1003.0)
    assert (five_seconds.start_s, five_seconds.end_s) == (1003.0, 1005.0)
    assert (next_one.start_s, next_one.end_s) == (1005.0, 1010.0)
