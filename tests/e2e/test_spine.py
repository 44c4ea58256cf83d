"""The spine end to end: simulated trucks → Mosquitto → bridge → PostgreSQL + Redis → REST and live WebSocket.

Counts are exact. The fleet's own records (what the broker acknowledged, what the bridge reported as
persisted) are held against the database, the API and the live stream; the values are held against a
replay of the same trucks, since a truck gives the same samples for the same seed and steps.
"""

from __future__ import annotations

import asyncio
import struct
from collections.abc import Callable, Mapping
from contextlib import AbstractAsyncContextManager
from datetime import datetime, timedelta
from typing import Any

import httpx
import msgspec
import psycopg
import pytest
from psycopg.rows import dict_row

from firmware_sim.fleet import Fleet
from firmware_sim.truck import Truck
from models.telemetry import Sample, utcnow
from tests.e2e.conftest import FleetStarter, LiveWatcher, eventually

pytestmark = pytest.mark.e2e

DEVICES = 10
SAMPLES = 30
LAST_SEQ = SAMPLES - 1
RATE_HZ = 100.0  # the whole run takes SAMPLES / RATE_HZ = 0.3 s
PAGE_LIMIT = 7  # 30 samples: pages of 7, 7, 7, 7 and 2
CONNECT_TIMEOUT_S = 10.0
SETTLE_TIMEOUT_S = 15.0
MOVING_RATE_HZ = 2.0
STEPS_APART = 4  # two state reads at least this many samples (2 s of driving at 2 Hz) apart
SCHEDULE_TOLERANCE = timedelta(microseconds=1)  # float seconds rounded to PostgreSQL's microseconds
# Columns of `telemetry` stored as `real`: compared at single precision.
REAL_FIELDS = frozenset({"alt", "speed", "heading", "accuracy", "fuel", "engine_temp"})
STORED_COLUMNS = (
    "device_id, ts, seq, boot, quality, lat, lon, alt, speed, heading, accuracy, fuel, engine_temp, odometer"
)

LiveWatch = Callable[[list[str]], AbstractAsyncContextManager[LiveWatcher]]


def single(value: float) -> float:
    """`value` rounded to single precision, as a `real` column keeps it."""
    rounded: float = struct.unpack("f", struct.pack("f", value))[0]
    return rounded


def comparable(values: Mapping[str, Any]) -> dict[str, Any]:
    """Flat sample values with the `real` ones at single precision: the database's view of a sample."""
    return {
        name: single(value) if name in REAL_FIELDS and value is not None else value for name, value in values.items()
    }


def sample_values(sample: Sample) -> dict[str, Any]:
    """What a simulated sample says, flat like a `telemetry` row."""
    assert sample.pos is not None
    position = msgspec.structs.asdict(sample.pos)
    return comparable({"seq": sample.seq, "boot": sample.boot, "quality": sample.quality, **position, **sample.metrics})


def row_values(row: Mapping[str, Any]) -> dict[str, Any]:
    """A `telemetry` row (without its key and time), flat."""
    return comparable({name: value for name, value in row.items() if name not in {"device_id", "ts"}})


def item_values(item: Mapping[str, Any]) -> dict[str, Any]:
    """A telemetry history item of the API, flat."""
    return comparable(
        {"seq": item["seq"], "boot": item["boot"], "quality": item["quality"], **item["position"], **item["metrics"]}
    )


def replay(fleet: Fleet, wall_start: datetime) -> dict[str, list[Sample]]:
    """The samples a scheduled run of `fleet` produced: the same trucks stepped again, on its schedule.

    Device i of n samples at `start + k/rate + i/(n·rate)` (see `firmware_sim.fleet`), stepping by one period.
    """
    options = fleet.options
    assert options.rate_hz is not None
    assert options.count is not None
    period = 1.0 / options.rate_hz
    expected: dict[str, list[Sample]] = {}
    for i, device in enumerate(fleet.devices):
        truck = Truck(device.device_id, seed=options.seed, centre=options.centre, boot=device.boot)
        expected[device.device_id] = [
            truck.step(wall_start + timedelta(seconds=k * period + i * period / len(fleet.devices)), period)
            for k in range(options.count)
        ]
    return expected


def floor_ms(ts: datetime) -> datetime:
    """`ts` truncated to milliseconds, the resolution of cached state."""
    return ts.replace(microsecond=ts.microsecond // 1000 * 1000)


async def read_states(http: httpx.AsyncClient, device_ids: list[str]) -> dict[str, Any]:
    """Every device's `GET /devices/{id}/state` body, or None while the API has no state for it."""
    responses = await asyncio.gather(*(http.get(f"/api/v1/devices/{d}/state") for d in device_ids))
    states: dict[str, Any] = {}
    for device_id, response in zip(device_ids, responses, strict=True):
        assert response.status_code in {200, 404}, response.text
        states[device_id] = response.json() if response.status_code == 200 else None
    return states


def position_seq(state: Mapping[str, Any] | None) -> int | None:
    """The seq of the sample a state's position came from, if it has one."""
    return None if state is None or state["position"] is None else state["position"]["seq"]


async def read_history(http: httpx.AsyncClient, device_id: str, start: datetime, end: datetime) -> list[list[Any]]:
    """A device's telemetry history, page by page following `next_cursor`."""
    pages: list[list[Any]] = []
    cursor: str | None = None
    while True:
        params = {"from": start.isoformat(), "to": end.isoformat(), "limit": str(PAGE_LIMIT)}
        response = await http.get(
            f"/api/v1/devices/{device_id}/telemetry", params=params | ({"cursor": cursor} if cursor else {})
        )
        assert response.status_code == 200, response.text
        body = response.json()
        pages.append(body["items"])
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
        assert len(pages) <= SAMPLES, f"{device_id}: the history cursor does not end"


async def test_spine_delivers_every_acknowledged_sample_exactly_once_to_storage_rest_and_live(
    http: httpx.AsyncClient, watch_live: LiveWatch, start_fleet: FleetStarter, database_url: str
) -> None:
    wall_start = utcnow()
    fleet = start_fleet(devices=DEVICES, rate_hz=RATE_HZ, count=SAMPLES, wall_clock=lambda: wall_start)
    ids = [device.device_id for device in fleet.devices]
    expected = replay(fleet, wall_start)
    total = DEVICES * SAMPLES

    async with (
        watch_live(ids) as live,
        await psycopg.AsyncConnection.connect(database_url, autocommit=True, row_factory=dict_row) as db,
    ):
        assert live.snapshots == dict.fromkeys(ids), "state known before any truck drove"
        assert await asyncio.to_thread(fleet.wait_connected, CONNECT_TIMEOUT_S), "devices did not connect"
        await asyncio.to_thread(fleet.run)
        assert await asyncio.to_thread(fleet.wait_acked, SETTLE_TIMEOUT_S), f"not all acknowledged: {fleet.stats()}"

        async def stored_rows() -> int:
            cursor = await db.execute("SELECT count(*) AS n FROM telemetry")
            row = await cursor.fetchone()
            assert row is not None
            return int(row["n"])

        await eventually(stored_rows, lambda n: n >= total, timeout_s=SETTLE_TIMEOUT_S, what=f"{total} rows committed")
        states = await eventually(
            lambda: read_states(http, ids),
            lambda found: all(position_seq(state) == LAST_SEQ for state in found.values()),
            timeout_s=SETTLE_TIMEOUT_S,
            what=f"every device's REST state at seq {LAST_SEQ}",
        )

        async def live_positions() -> dict[str, Any]:
            return dict(live.last_position)

        await eventually(
            live_positions,
            lambda seen: all(d in seen and seen[d]["seq"] == LAST_SEQ for d in ids),
            timeout_s=SETTLE_TIMEOUT_S,
            what=f"every device's live position at seq {LAST_SEQ}",
        )

        async def persisted() -> dict[str, Any]:
            return {device.device_id: device.persisted() for device in fleet.devices}

        acknowledged = {device.device_id: device.acknowledged() for device in fleet.devices}
        await eventually(
            persisted,
            lambda found: found == acknowledged,
            timeout_s=SETTLE_TIMEOUT_S,
            what="every device told `persisted` for all it sent",
        )

        cursor = await db.execute(f"SELECT {STORED_COLUMNS} FROM telemetry ORDER BY device_id, ts, seq")
        rows = await cursor.fetchall()
        cursor = await db.execute("SELECT count(*) AS n FROM rejected_messages")
        dead_letters = await cursor.fetchone()

    # PostgreSQL: exactly one row per sample, exactly the samples the broker acknowledged, as produced.
    assert len(rows) == total
    stored_keys = [(row["device_id"], row["boot"], row["seq"]) for row in rows]
    assert len(set(stored_keys)) == total, "a (device, boot, seq) is stored twice"
    acknowledged_keys = {
        (device_id, r.boot, seq)
        for device_id, ranges in acknowledged.items()
        for r in ranges
        for seq in range(r.first, r.last + 1)
    }
    assert set(stored_keys) == acknowledged_keys
    assert acknowledged_keys == {(d.device_id, d.boot, seq) for d in fleet.devices for seq in range(SAMPLES)}
    assert dead_letters == {"n": 0}
    by_device = {d: [row for row in rows if row["device_id"] == d] for d in ids}
    for device_id, samples in expected.items():
        stored = by_device[device_id]
        assert [row_values(row) for row in stored] == [sample_values(s) for s in samples], device_id
        assert all(abs(row["ts"] - s.ts) <= SCHEDULE_TOLERANCE for row, s in zip(stored, samples, strict=True))

    # REST registry: exactly the fleet.
    response = await http.get("/api/v1/devices")
    assert response.status_code == 200, response.text
    registry = response.json()
    assert [device["id"] for device in registry["items"]] == ids
    assert registry["next_cursor"] is None
    assert all(device["last_seen"] is not None for device in registry["items"])

    # REST state: every field from each device's last sample.
    for device_id in ids:
        last, last_ts = expected[device_id][LAST_SEQ], floor_ms(by_device[device_id][LAST_SEQ]["ts"])
        state = states[device_id]
        position = state["position"]
        assert {k: v for k, v in position.items() if k not in {"ts", "seq"}} == msgspec.to_builtins(last.pos)
        assert (position["seq"], datetime.fromisoformat(position["ts"])) == (LAST_SEQ, last_ts)
        metrics = {
            name: (m["value"], m["seq"], m["boot"], datetime.fromisoformat(m["ts"]))
            for name, m in state["metrics"].items()
        }
        assert metrics == {name: (value, LAST_SEQ, last.boot, last_ts) for name, value in last.metrics.items()}
        assert (state["quality"]["value"], state["quality"]["seq"]) == (last.quality, LAST_SEQ)
        assert datetime.fromisoformat(state["ts"]) == last_ts

    # REST history: every sample once, in order, over pages of PAGE_LIMIT.
    window = (wall_start - timedelta(seconds=1), wall_start + timedelta(seconds=SAMPLES / RATE_HZ + 1))
    histories = await asyncio.gather(*(read_history(http, device_id, *window) for device_id in ids))
    for device_id, pages in zip(ids, histories, strict=True):
        assert [len(page) for page in pages] == [7, 7, 7, 7, 2], device_id
        items = [item for page in pages for item in page]
        assert [item["seq"] for item in items] == list(range(SAMPLES))
        assert [datetime.fromisoformat(item["ts"]) for item in items] == [row["ts"] for row in by_device[device_id]]
        assert [item_values(item) for item in items] == [sample_values(s) for s in expected[device_id]]

    # Live: every device streamed, and the stream ended where REST state is.
    assert live.unexpected == []
    # Each truck's ignition came on at its first step; every event streamed once.
    assert {d: [e["name"], e["data"]] for d in ids for e in live.events[d][:1]} == {
        d: ["ignition", {"on": True}] for d in ids
    }
    assert all(len({(e["boot"], e["seq"]) for e in live.events[d]}) == len(live.events[d]) for d in ids)
    assert set(live.updates) == set(ids)
    assert all(live.updates[d] >= 1 for d in ids)
    assert live.last_position == {d: states[d]["position"] for d in ids}

    # The devices' own books: all published, acknowledged and persisted; nothing refused or lost.
    stats = fleet.stats()
    assert (stats.produced, stats.published, stats.acked, stats.persisted) == (total, total, total, total)
    assert (stats.outbox, stats.refused, stats.dropped, stats.rejected) == (0, 0, 0, 0)


async def test_trucks_move_between_two_state_reads(http: httpx.AsyncClient, start_fleet: FleetStarter) -> None:
    fleet = start_fleet(devices=DEVICES, rate_hz=MOVING_RATE_HZ)
    ids = [device.device_id for device in fleet.devices]
    assert await asyncio.to_thread(fleet.wait_connected, CONNECT_TIMEOUT_S), "devices did not connect"

    runner = asyncio.create_task(asyncio.to_thread(fleet.run), name="e2e-fleet")
    try:
        first = await eventually(
            lambda: read_states(http, ids),
            lambda found: all(position_seq(state) is not None for state in found.values()),
            timeout_s=SETTLE_TIMEOUT_S,
            what="a position for every device",
        )
        second = await eventually(
            lambda: read_states(http, ids),
            lambda found: all(
                (position_seq(found[d]) or 0) >= (position_seq(first[d]) or 0) + STEPS_APART for d in ids
            ),
            timeout_s=SETTLE_TIMEOUT_S,
            what=f"every device's position {STEPS_APART} samples later",
        )
    finally:
        fleet.stop()
        await runner

    for device_id in ids:
        before, after = first[device_id], second[device_id]
        where = (before["position"]["lat"], before["position"]["lon"])
        assert (after["position"]["lat"], after["position"]["lon"]) != where, f"{device_id} did not move"
        # Not GNSS noise: the odometer (true distance driven) went up.
        assert after["metrics"]["odometer"]["value"] > before["metrics"]["odometer"]["value"], device_id
