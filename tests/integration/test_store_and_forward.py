"""Device store-and-forward through the real broker and the real bridge, under faults.

Each test has a Mosquitto of its own (stopped and restarted on the same port), a bridge in the test's
event loop (`running_bridge`, started and stopped by the test), a database of its own, and devices
whose stores live in the test's folder. The invariant of every test: each sample ends up in
PostgreSQL exactly once with its original time, and a device frees a sample only when `persisted`
confirms it — a PUBACK from the broker frees nothing. `BufferAudit` checks that on every snapshot.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from pathlib import Path
from typing import Self

import psycopg
import pytest

from broker.process import start_mosquitto
from config import Settings
from firmware_sim.address import parse_broker_url
from firmware_sim.device import Device, DeviceOptions, DeviceStats
from firmware_sim.truck import Truck
from models.telemetry import Sample, utcnow
from stack.process import ServerProcess
from tests.integration.bridge import conftest as bridge_fixtures
from tests.integration.bridge.conftest import running_bridge

pytestmark = pytest.mark.integration

# The bridge tests' fixture, named here so that pytest finds it for these tests too; it takes the
# `mqtt_url` below, which points at this module's own broker.
bridge_settings = bridge_fixtures.bridge_settings

PERSIST_TIMEOUT_S = 0.5
SETTLE_S = 15.0
POLL_S = 0.01
Row = tuple[datetime, int, int]  # ts, seq, boot


@pytest.fixture
def store_broker(servers_dir: Path) -> Iterator[ServerProcess]:
    """A Mosquitto for one test, which the test stops and restarts (same port, same data)."""
    with start_mosquitto(servers_dir / f"sf-mosquitto-{uuid.uuid4().hex[:8]}") as server:
        yield server


@pytest.fixture
def mqtt_url(store_broker: ServerProcess) -> str:
    """This module's broker for everything here, the bridge included."""
    return store_broker.url


@pytest.fixture
def make_device(mqtt_url: str, tmp_path: Path) -> Iterator[Callable[[str], Device]]:
    """Devices with stores in the test's folder, short timeouts, connected; all closed at teardown."""
    devices: list[Device] = []

    def make(device_id: str) -> Device:
        options = DeviceOptions(
            reconnect_min_s=1, reconnect_max_s=1, store_dir=tmp_path / "stores", persist_timeout_s=PERSIST_TIMEOUT_S
        )
        device = Device(device_id, parse_broker_url(mqtt_url), options)
        devices.append(device)
        device.connect()
        return device

    yield make
    for device in devices:
        device.close(timeout_s=1.0)


class BufferAudit:
    """Sends through one device and checks, on every snapshot, that only `persisted` frees samples.

    `buffered + persisted` must always equal what the device stored: a sample leaves the store exactly
    when the bridge's confirmation arrives (nothing here is refused, rejected or dropped). Used as
    `async with BufferAudit(device) as audit:` — it polls while inside.
    """

    def __init__(self, device: Device, *, carried: int = 0) -> None:
        self.device = device
        self.stored = carried
        self.snapshots = 0
        self.violations: list[DeviceStats] = []
        self._watcher: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Self:
        self._watcher = asyncio.create_task(self._watch(), name=f"audit-{self.device.device_id}")
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        assert self._watcher is not None
        self._watcher.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._watcher

    def send(self, samples: list[Sample]) -> None:
        # No await between the two: the polling task never sees one without the other.
        for sample in samples:
            self.device.send(sample)
        self.stored += len(samples)

    async def _watch(self) -> None:
        while True:
            stats = self.device.stats()
            self.snapshots += 1
            if stats.buffered + stats.persisted != self.stored:
                self.violations.append(stats)
            await asyncio.sleep(POLL_S)


async def eventually(condition: Callable[[], bool], what: str, timeout_s: float = SETTLE_S) -> None:
    """Poll `condition` until it holds; fail with `what` after `timeout_s`."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while not condition():
        if loop.time() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s} s")
        await asyncio.sleep(POLL_S)


async def stored_rows(database_url: str, device_id: str) -> list[Row]:
    """The device's telemetry rows as (ts, seq, boot), in seq order, duplicates included."""
    async with await psycopg.AsyncConnection.connect(database_url) as db:
        cursor = await db.execute(
            "SELECT ts, seq, boot FROM telemetry WHERE device_id = %s ORDER BY boot, seq, ts", (device_id,)
        )
        return [(ts, seq, boot) for ts, seq, boot in await cursor.fetchall()]


async def rows_eventually(database_url: str, device_id: str, count: int, timeout_s: float = SETTLE_S) -> None:
    """Wait until the device has `count` rows in the database."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout_s
    while len(await stored_rows(database_url, device_id)) < count:
        if loop.time() > deadline:
            raise AssertionError(f"{count} rows of {device_id}: not within {timeout_s} s")
        await asyncio.sleep(POLL_S)


def keys(samples: list[Sample]) -> list[Row]:
    return sorted((s.ts, s.seq, s.boot) for s in samples)


def measure(truck: Truck, start: datetime, count: int) -> list[Sample]:
    """`count` samples one second apart from `start`: device times a test can hold the database to."""
    return [truck.step(start + timedelta(seconds=k), 1.0) for k in range(count)]


async def test_samples_stored_while_the_broker_is_down_reach_the_database_once_across_a_simulator_restart(
    store_broker: ServerProcess,
    bridge_settings: Settings,
    database_url: str,
    make_device: Callable[[str], Device],
) -> None:
    device_id = f"sf-a-{uuid.uuid4().hex[:6]}"
    start = utcnow().replace(microsecond=0) - timedelta(minutes=5)
    async with running_bridge(bridge_settings):
        device = make_device(device_id)
        async with BufferAudit(device) as audit:
            assert await asyncio.to_thread(device.wait_connected, 5.0)
            truck = Truck(device_id, seed=1, boot=device.boot, first_seq=device.next_seq)
            live = measure(truck, start, 5)
            audit.send(live)
            await eventually(lambda: device.stats().persisted == 5, "live samples persisted")

            await asyncio.to_thread(store_broker.stop)
            await eventually(lambda: not device.connected, "the device noticed the broker is gone")
            offline = measure(truck, start + timedelta(seconds=5), 10)
            audit.send(offline)
            stats = device.stats()
            assert (stats.deferred, stats.buffered, stats.outbox, stats.acked) == (10, 10, 10, 5)
            assert stats.oldest_unpersisted_age_s >= 4 * 60
        assert audit.violations == []

        # The simulator stops with the broker still down, and starts again on the same store.
        await asyncio.to_thread(device.close, 1.0)
        restarted = make_device(device_id)
        assert (restarted.boot, restarted.next_seq, restarted.buffered) == (device.boot, 15, 10)
        async with BufferAudit(restarted, carried=10) as audit:
            truck = Truck(device_id, seed=2, boot=restarted.boot, first_seq=restarted.next_seq)
            after_restart = measure(truck, start + timedelta(seconds=15), 5)
            audit.send(after_restart)
            assert restarted.stats().buffered == 15

            await asyncio.to_thread(store_broker.restart)
            await eventually(lambda: restarted.buffered == 0, "the backlog persisted after the broker came back")

    samples = live + offline + after_restart
    assert [s.seq for s in samples] == list(range(20)), "the restarted device continued the seq"
    rows = await stored_rows(database_url, device_id)
    assert rows == keys(samples), "every sample once, with its original device time"
    assert audit.violations == []
    assert audit.snapshots > 10
    final = restarted.stats()
    assert (final.persisted, final.dropped, final.refused, final.rejected) == (15, 0, 0, 0)


async def test_acknowledged_samples_stay_buffered_while_no_bridge_commits_and_drain_when_it_returns(
    bridge_settings: Settings, database_url: str, make_device: Callable[[str], Device]
) -> None:
    device_id = f"sf-b-{uuid.uuid4().hex[:6]}"
    start = utcnow().replace(microsecond=0) - timedelta(minutes=5)
    device = make_device(device_id)
    async with BufferAudit(device) as audit:
        async with running_bridge(bridge_settings):
            assert await asyncio.to_thread(device.wait_connected, 5.0)
            truck = Truck(device_id, seed=3, boot=device.boot, first_seq=device.next_seq)
            first = measure(truck, start, 5)
            audit.send(first)
            await eventually(lambda: device.buffered == 0, "the first samples persisted")

        # The bridge is gone; its session stays on the broker, which acknowledges and queues for it.
        unconfirmed = measure(truck, start + timedelta(seconds=5), 20)
        audit.send(unconfirmed)
        assert await asyncio.to_thread(device.wait_acked, 5.0)
        assert device.stats().acked == 25
        # A reply to a duplicate the old bridge committed may still arrive at first; then silence.
        await asyncio.sleep(2 * PERSIST_TIMEOUT_S)
        resent_before = device.stats().resent_unpersisted
        await asyncio.sleep(4 * PERSIST_TIMEOUT_S)
        stats = device.stats()
        assert stats.buffered == 20, "acknowledged by the broker, but nobody committed them: nothing freed"
        assert stats.resent_unpersisted >= 1, "the device probed with resends after the timeout"
        probes = stats.resent_unpersisted - resent_before
        assert 1 <= probes <= 5, f"a silent bridge gets one sample per timeout, not the whole buffer: {probes}"
        more = measure(truck, start + timedelta(seconds=25), 5)
        audit.send(more)
        assert device.buffered == 25

        async with running_bridge(bridge_settings):
            await eventually(lambda: device.buffered == 0, "the buffer drained once the bridge was back")

    rows = await stored_rows(database_url, device_id)
    assert rows == keys(first + unconfirmed + more), "every sample once, with its original device time"
    assert audit.violations == []
    assert device.stats().persisted == 30


async def test_a_lost_persisted_reply_is_made_good_by_a_resend_after_the_timeout(
    bridge_settings: Settings, database_url: str, make_device: Callable[[str], Device]
) -> None:
    device_id = f"sf-c-{uuid.uuid4().hex[:6]}"
    start = utcnow().replace(microsecond=0) - timedelta(minutes=5)
    async with running_bridge(bridge_settings):
        device = make_device(device_id)
        assert await asyncio.to_thread(device.wait_connected, 5.0)
        truck = Truck(device_id, seed=4, boot=device.boot, first_seq=device.next_seq)
        samples = measure(truck, start, 10)

        device.ignore_persisted()  # every `persisted` reply is lost from now on
        for sample in samples:
            device.send(sample)
        assert await asyncio.to_thread(device.wait_acked, 5.0)
        await rows_eventually(database_url, device_id, 10)
        assert device.buffered == 10, "the bridge committed, but the device never heard of it"
        await eventually(lambda: device.stats().resent_unpersisted >= 1, "a resend after the timeout")
        assert device.buffered == 10

        device.ignore_persisted(False)
        await eventually(lambda: device.buffered == 0, "the resends were confirmed")

    stats = device.stats()
    assert stats.resent_unpersisted >= 10, "every unconfirmed sample was sent again"
    assert (stats.published, stats.acked, stats.persisted) == (10, 10, 10)
    assert await stored_rows(database_url, device_id) == keys(samples), "resends stored nothing twice"
