"""`python -m firmware_sim` end to end against the session broker: a short fleet run and a replay."""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from firmware_sim.cli import main
from firmware_sim.replay import Recording, encode_recording
from firmware_sim.truck import Truck
from models.telemetry import Sample
from models.topics import TopicKind, device_topic
from tests.integration.firmware_sim.sim_mqtt import RawSubscriber

pytestmark = pytest.mark.integration


def test_cli_runs_a_fleet_until_count_and_reports_every_sample_acked(
    mqtt_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    prefix = f"cli{time.monotonic_ns() % 10**6}-"
    argv = ["--url", mqtt_url, "--devices", "3", "--rate", "50", "--count", "10", "--prefix", prefix, "--quiet"]

    assert main(argv) == 0

    summary = capsys.readouterr().err
    assert "published 30 " in summary
    assert "acked 30 (120 readings)" in summary
    assert "unacknowledged 0" in summary


def test_cli_runs_a_gateway_for_a_while_and_reports_its_windows_acked(
    mqtt_url: str, raw_subscriber: type[RawSubscriber], capsys: pytest.CaptureFixture[str]
) -> None:
    site = f"cli{time.monotonic_ns() % 10**6}"
    listener = raw_subscriber(mqtt_url, [f"fleet/v1/{site}-vibration-1/telemetry"])
    argv = ["--url", mqtt_url, "--gateway", "--site", site, "--duration", "3", "--drain", "1", "--quiet"]

    listener.wait_subscribed()

    status = main(argv)

    summary = capsys.readouterr().err
    assert status == 1, summary  # no bridge on this broker: no window was confirmed as stored
    assert f"gateway: {site}-gw for 5 sensors" in summary
    assert "refused 0, dropped 0" in summary
    assert listener.wait_for(lambda messages: len(messages) >= 2)
    windows = [msgspec.json.decode(m.payload, type=Sample) for m in listener.messages]
    assert all(0 < w.agg["vibration"].count <= 100 for w in windows)


def test_cli_replays_a_recording_rebased_to_now(
    mqtt_url: str, raw_subscriber: type[RawSubscriber], tmp_path: Path
) -> None:
    device_id = f"replay{time.monotonic_ns() % 10**6}"
    recorded_at = datetime(2026, 1, 5, 7, 0, tzinfo=UTC)
    truck = Truck(device_id, seed=3)
    samples = [truck.step(recorded_at + timedelta(seconds=i), 1.0) for i in range(30)]
    trip = tmp_path / "trip.json"
    trip.write_bytes(encode_recording(Recording(device_id=device_id, samples=samples)))
    subscriber = raw_subscriber(mqtt_url, [device_topic(device_id, TopicKind.TELEMETRY)])
    subscriber.wait_subscribed()
    started = datetime.now(UTC)

    assert main(["--url", mqtt_url, "--replay", str(trip), "--speed", "0", "--quiet"]) == 0

    assert subscriber.wait_for(lambda messages: len(messages) >= 30)
    replayed = [msgspec.json.decode(m.payload, type=Sample) for m in subscriber.messages]
    assert [s.seq for s in replayed] == list(range(30))
    # Re-based: the last sample at the replay's start, the recorded one-second gaps kept before it.
    assert started <= replayed[-1].ts <= datetime.now(UTC)
    assert replayed[-1].ts - replayed[0].ts == timedelta(seconds=29)
    assert [s.pos for s in replayed] == [s.pos for s in samples]
