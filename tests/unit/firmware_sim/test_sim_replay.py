"""Recorded trips: the file format, the replay plan (original or re-based time, speed) and playback."""

from __future__ import annotations

import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from firmware_sim.errors import RecordingError
from firmware_sim.replay import (
    Recording,
    encode_recording,
    load_recording,
    parse_recording,
    plan_replay,
    play,
)
from firmware_sim.truck import Truck
from models.telemetry import Sample

T0 = datetime(2026, 11, 20, 8, 0, tzinfo=UTC)

RECORDING_JSON = """
{
  "device_id": "truck-0042",
  "samples": [
    {"seq": 1, "ts": "2026-11-20T08:00:10Z", "pos": {"lat": 52.52, "lon": 13.405, "speed": 31.5}},
    {"seq": 0, "ts": "2026-11-20T08:00:00Z", "metrics": {"fuel": 71.2}, "quality": 97, "newer_field": 1},
    {"seq": 2, "ts": "2026-11-20T08:00:30Z", "boot": 3}
  ]
}
"""


def test_parse_recording_reads_the_documented_format() -> None:
    recording = parse_recording(RECORDING_JSON)
    assert recording.device_id == "truck-0042"
    assert [s.seq for s in recording.samples] == [1, 0, 2]
    assert recording.samples[1].metrics == {"fuel": 71.2}
    assert recording.samples[2].boot == 3


@pytest.mark.parametrize(
    ("text", "reason"),
    [
        ("{", "not a valid recording"),
        ('{"samples": []}', "device_id"),
        ('{"device_id": "a/b", "samples": []}', "not a valid device id"),
        ('{"device_id": "t1", "samples": [{"seq": 0, "ts": "2026-11-20T08:00:00"}]}', "timezone"),
        (
            '{"device_id": "t1", "samples": [{"seq": 0, "ts": "2026-11-20T08:00:00Z", "pos": {"lat": 91, "lon": 0}}]}',
            "lat",
        ),
    ],
)
def test_parse_recording_says_what_is_wrong(text: str, reason: str) -> None:
    with pytest.raises(RecordingError, match=reason):
        parse_recording(text)


def test_recording_round_trips_through_a_file(tmp_path: Path) -> None:
    truck = Truck("truck-0001", seed=1)
    samples = [truck.step(T0 + timedelta(seconds=i), 1.0) for i in range(20)]
    path = tmp_path / "trip.json"
    path.write_bytes(encode_recording(Recording(device_id="truck-0001", samples=samples)))
    assert load_recording(path) == Recording(device_id="truck-0001", samples=samples)


def test_load_recording_names_a_missing_file(tmp_path: Path) -> None:
    with pytest.raises(RecordingError, match=r"missing\.json"):
        load_recording(tmp_path / "missing.json")


def test_plan_keeps_original_time_and_sorts_by_time() -> None:
    steps = plan_replay(parse_recording(RECORDING_JSON), speed=1.0)
    assert [s.sample.seq for s in steps] == [0, 1, 2]
    assert [s.offset_s for s in steps] == [0.0, 10.0, 30.0]
    assert [s.sample.ts for s in steps] == [T0, T0 + timedelta(seconds=10), T0 + timedelta(seconds=30)]


def test_plan_rebases_time_to_the_send_time_at_speed() -> None:
    start = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    steps = plan_replay(parse_recording(RECORDING_JSON), speed=10.0, start=start)
    assert [s.offset_s for s in steps] == [0.0, 1.0, 3.0]
    assert [s.sample.ts for s in steps] == [start, start + timedelta(seconds=1), start + timedelta(seconds=3)]
    assert [s.sample.seq for s in steps] == [0, 1, 2], "seq and boot are kept"


def test_plan_at_speed_zero_sends_at_once_ending_at_start() -> None:
    start = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
    steps = plan_replay(parse_recording(RECORDING_JSON), speed=0.0, start=start)
    assert [s.offset_s for s in steps] == [0.0, 0.0, 0.0]
    assert [s.sample.ts for s in steps] == [start - timedelta(seconds=30), start - timedelta(seconds=20), start]


def test_plan_rejects_negative_speed_and_naive_start() -> None:
    recording = parse_recording(RECORDING_JSON)
    with pytest.raises(ValueError, match="speed"):
        plan_replay(recording, speed=-1.0)
    with pytest.raises(ValueError, match="timezone"):
        plan_replay(recording, start=datetime(2026, 1, 1))


def test_play_sends_in_order_and_stops_when_asked() -> None:
    steps = plan_replay(parse_recording(RECORDING_JSON), speed=1000.0)
    sent: list[Sample] = []
    assert play(steps, sent.append) == 3
    assert [s.seq for s in sent] == [0, 1, 2]
    stop = threading.Event()
    stop.set()
    assert play(steps, sent.append, stop=stop) == 0
