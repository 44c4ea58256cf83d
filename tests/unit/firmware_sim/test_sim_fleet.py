"""The fleet runner without a broker: ids, batching into messages, and the drift-free schedule."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from firmware_sim.address import BrokerAddress
from firmware_sim.device import DeviceOptions
from firmware_sim.fleet import Fleet, FleetOptions, device_ids
from models.telemetry import Sample

NOWHERE = BrokerAddress("127.0.0.1", 1)  # never connected: these tests do not start the devices
T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def _capture(fleet: Fleet) -> list[list[list[Sample]]]:
    """Replace each device's send with a recorder of the messages it would publish."""
    sent: list[list[list[Sample]]] = [[] for _ in fleet.devices]
    for i, device in enumerate(fleet.devices):

        def send(samples: Sample | Sequence[Sample], *, state: bytes | None = None, i: int = i) -> None:
            sent[i].append([samples] if isinstance(samples, Sample) else list(samples))

        device.send = send  # type: ignore[method-assign]
    return sent


def test_device_ids_are_numbered_with_a_prefix() -> None:
    assert device_ids("truck-", 3) == ["truck-0001", "truck-0002", "truck-0003"]
    assert device_ids("s.", 2, first_index=9999) == ["s.9999", "s.10000"]


def test_fleet_options_reject_ids_that_are_not_device_ids() -> None:
    with pytest.raises(ValueError, match="prefix"):
        FleetOptions(prefix="a/b-")
    with pytest.raises(ValueError, match="batch"):
        FleetOptions(batch=0)


def test_fleet_batches_samples_into_messages() -> None:
    fleet = Fleet(NOWHERE, FleetOptions(devices=2, batch=5))
    sent = _capture(fleet)
    for k in range(12):
        fleet.step_all(T0 + timedelta(seconds=k), 1.0)
    assert [len(m) for m in sent[0]] == [5, 5]
    fleet.flush()
    assert [len(m) for m in sent[0]] == [5, 5, 2]
    assert [s.seq for m in sent[1] for s in m] == list(range(12))
    assert fleet.stats().produced == 24


def test_fleet_holds_samples_while_its_devices_are_offline() -> None:
    fleet = Fleet(NOWHERE, FleetOptions(devices=3))
    for k in range(4):
        fleet.step_all(T0 + timedelta(seconds=k), 1.0)
    stats = fleet.stats()
    assert (stats.deferred, stats.outbox, stats.published, stats.connected) == (12, 12, 0, 0)


def test_fleet_schedule_spreads_devices_over_the_period_without_drift() -> None:
    fleet = Fleet(NOWHERE, FleetOptions(devices=4, rate_hz=100.0, duration_s=0.1), wall_clock=lambda: T0)
    sent = _capture(fleet)
    fleet.run()
    for i, messages in enumerate(sent):
        times = [m[0].ts for m in messages]
        # Exactly duration × rate samples each, at scheduled (not measured) times, offset by i/(n·rate).
        assert times == [T0 + timedelta(seconds=k / 100.0 + i / 400.0) for k in range(10)]


def test_fleet_count_limits_samples_per_device() -> None:
    fleet = Fleet(NOWHERE, FleetOptions(devices=2, rate_hz=1000.0, count=7, batch=3))
    sent = _capture(fleet)
    fleet.run()
    assert [[len(m) for m in messages] for messages in sent] == [[3, 3, 1], [3, 3, 1]]


def test_fleet_restarted_on_its_store_directory_continues_each_devices_boot_and_seq(tmp_path: Path) -> None:
    options = FleetOptions(devices=2, device=DeviceOptions(store_dir=tmp_path))
    fleet = Fleet(NOWHERE, options)
    boots = [d.boot for d in fleet.devices]
    for k in range(3):
        fleet.step_all(T0 + timedelta(seconds=k), 1.0)
    stats = fleet.stats()
    assert (stats.buffered, stats.deferred, stats.outbox) == (6, 6, 6)
    assert stats.oldest_unpersisted_age_s > 0
    fleet.close(timeout_s=0)
    assert sorted(p.name for p in tmp_path.glob("*.sqlite")) == ["truck-0001.sqlite", "truck-0002.sqlite"]

    again = Fleet(NOWHERE, options)
    try:
        assert [d.boot for d in again.devices] == boots
        assert [d.next_seq for d in again.devices] == [3, 3]
        assert again.stats().buffered == 6, "unsent samples survive the restart"
        sent = _capture(again)
        again.step_all(T0 + timedelta(seconds=3), 1.0)
        assert [[s.seq for s in m] for m in sent[0]] == [[3]]
        assert sent[0][0][0].boot == boots[0]
    finally:
        again.close(timeout_s=0)


def _positions(fleet: Fleet, steps: range) -> list[tuple[float, float, float]]:
    """Step the fleet's only truck and return (lat, lon, odometer) of each sample it stores and sends."""
    device = fleet.devices[0]
    send = device.send
    out: list[tuple[float, float, float]] = []

    def record(samples: Sample | Sequence[Sample], *, state: bytes | None = None) -> None:
        for sample in [samples] if isinstance(samples, Sample) else samples:
            assert sample.pos is not None
            out.append((sample.pos.lat, sample.pos.lon, float(sample.metrics["odometer"])))
        send(samples, state=state)

    device.send = record  # type: ignore[method-assign]
    for k in steps:
        fleet.step_all(T0 + timedelta(seconds=k), 10.0)
    return out


def test_fleet_restarted_on_its_store_directory_continues_each_trucks_route(tmp_path: Path) -> None:
    options = FleetOptions(devices=1, device=DeviceOptions(store_dir=tmp_path))
    fleet = Fleet(NOWHERE, options)
    before = _positions(fleet, range(60))
    fleet.close(timeout_s=0)
    again = Fleet(NOWHERE, options)
    try:
        after = _positions(again, range(60, 61))
    finally:
        again.close(timeout_s=0)
    (lat, lon, odometer), (last_lat, last_lon, last_odometer) = after[0], before[-1]
    start_lat, start_lon, _ = before[0]
    assert odometer >= last_odometer, "the odometer never runs backwards"
    assert odometer - last_odometer < 0.5, "one 10 s step drives at most a few hundred metres"
    # Within a few hundred metres of where it stopped (GNSS noise included), not back at its start.
    assert abs(lat - last_lat) < 0.005
    assert abs(lon - last_lon) < 0.008
    assert abs(lat - start_lat) + abs(lon - start_lon) > abs(lat - last_lat) + abs(lon - last_lon)


def test_fleet_without_a_store_directory_starts_a_new_boot_each_run() -> None:
    first = Fleet(NOWHERE, FleetOptions(devices=1), wall_clock=lambda: T0)
    boot = first.devices[0].boot
    first.close(timeout_s=0)
    later = T0 + timedelta(seconds=30)
    again = Fleet(NOWHERE, FleetOptions(devices=1), wall_clock=lambda: later)
    try:
        assert again.devices[0].boot > boot, "a rerun is a new boot, so (boot, seq) never repeats"
        assert again.devices[0].next_seq == 0
    finally:
        again.close(timeout_s=0)
