"""The rollups the sink maintains equal a brute-force aggregation of the stored rows, whatever the
order samples arrive in and however often they are redelivered."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec
import psycopg
import pytest
from psycopg.rows import dict_row

from bridge.decode import Decoded, decode_message
from bridge.message import RawMessage
from bridge.sink import PostgresTelemetrySink
from models.rollups import ROLLUPS, Rollup
from models.telemetry import METRIC_COLUMNS, Limits
from tests.contracts.buckets import brute_force, same_sum

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(microsecond=0)


def message(device: str, samples: list[dict[str, Any]]) -> Decoded:
    payload = msgspec.json.encode({"samples": samples})
    result = decode_message(RawMessage(f"fleet/v1/{device}/telemetry", payload, None, NOW), now=NOW, limits=Limits())
    assert not result.rejections, result.rejections
    return result


def random_samples(rng: random.Random, count: int) -> list[tuple[str, dict[str, Any]]]:
    """Samples of three devices over the last three hours; some share a timestamp, some carry no fix."""
    out = []
    for seq in range(count):
        ts = NOW - timedelta(hours=3) + timedelta(seconds=rng.randrange(3 * 3600))
        # Boots 0 and 1 with the same seqs: two samples of one instant and seq differ by their boot.
        sample: dict[str, Any] = {"seq": seq // 2, "boot": seq % 2, "ts": ts.isoformat(), "metrics": {}}
        for metric, low, high in (("fuel", 0, 100), ("engine_temp", -40, 150), ("odometer", 0, 1e6)):
            if rng.random() < 0.7:
                sample["metrics"][metric] = round(rng.uniform(low, high), 3)
        if rng.random() < 0.6:
            sample["pos"] = {"lat": rng.uniform(-90, 90), "lon": rng.uniform(-180, 180)}
        out.append((f"roll-{rng.randrange(3)}", sample))
    return out


async def stored_rows(database_url: str) -> list[dict[str, Any]]:
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT device_id, ts, boot, seq, lat, lon, {', '.join(METRIC_COLUMNS)} FROM telemetry")
        return await cur.fetchall()


async def assert_rollup_equals_brute_force(database_url: str, rollup: Rollup, rows: list[dict[str, Any]]) -> None:
    expected = brute_force(rows, rollup.width)
    async with await psycopg.AsyncConnection.connect(database_url) as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT * FROM {rollup.table}")
        stored = {(r["device_id"], r["ts"]): r for r in await cur.fetchall()}
    assert set(stored) == set(expected), rollup.table
    for key, want in expected.items():
        got = stored[key]
        assert got["samples"] == want.samples, key
        for metric, summary in want.metrics.items():
            assert got[f"{metric}_n"] == summary.n, (key, metric)
            assert got[f"{metric}_min"] == summary.low, (key, metric)
            assert got[f"{metric}_max"] == summary.high, (key, metric)
            assert same_sum(got[f"{metric}_sum"], summary.total), (key, metric)
        assert got["pos_n"] == want.fixes, key
        last = (got["pos_ts"], got["pos_seq"], got["lat"], got["lon"]) if got["pos_ts"] is not None else None
        assert last == want.last_fix, key
        assert got["pos_boot"] == (want.last_fix_order[1] if want.last_fix_order else None), key


async def test_rollups_equal_brute_force_despite_late_and_redelivered_samples(database_url: str) -> None:
    rng = random.Random(7)
    samples = random_samples(rng, 1500)
    # Late samples: the batches arrive in random time order, not in device order.
    rng.shuffle(samples)
    redelivered = rng.sample(samples, 400)
    sink = PostgresTelemetrySink(database_url)
    try:
        inserted = 0
        for start in range(0, len(samples), 100):
            chunk = samples[start : start + 100]
            # A message re-sent within the same batch, as after a reconnect.
            batch = [message(device, [sample]) for device, sample in chunk] + [message(chunk[0][0], [chunk[0][1]])]
            inserted += (await sink.write(batch)).inserted
        again = await sink.write([message(device, [sample]) for device, sample in redelivered])
    finally:
        await sink.close()

    rows = await stored_rows(database_url)
    assert inserted == len(rows) == len(samples)
    assert again.inserted == 0
    for rollup in ROLLUPS:
        await assert_rollup_equals_brute_force(database_url, rollup, rows)


async def test_rollups_take_a_sample_that_arrives_after_its_bucket_was_summarised(database_url: str) -> None:
    minute = NOW.replace(second=0) - timedelta(minutes=30)
    first = {"seq": 2, "ts": (minute + timedelta(seconds=40)).isoformat(), "metrics": {"fuel": 50.0}}
    late = {
        "seq": 1,
        "ts": (minute + timedelta(seconds=10)).isoformat(),
        "metrics": {"fuel": 20.0},
        "pos": {"lat": 1.5, "lon": 2.5},
    }
    sink = PostgresTelemetrySink(database_url)
    try:
        await sink.write([message("late-1", [first])])
        await sink.write([message("late-1", [late]), message("late-1", [first])])
    finally:
        await sink.close()

    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT samples, fuel_n, fuel_sum, fuel_min, fuel_max, pos_n, lat, lon FROM telemetry_1m"
            " WHERE device_id = 'late-1'"
        ).fetchall()
    assert row == [(2, 2, 70.0, 20.0, 50.0, 1, 1.5, 2.5)]
