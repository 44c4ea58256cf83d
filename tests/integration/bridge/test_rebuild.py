"""Rebuilding the Redis state cache from PostgreSQL after Redis lost it (real Redis, real PostgreSQL)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import msgspec
import psycopg
import pytest
import redis.asyncio as aioredis

from bridge.cache import RedisStateCache
from bridge.decode import Decoded, coalesce, decode_message, with_presence
from bridge.errors import SinkUnavailableError
from bridge.message import RawMessage
from bridge.rebuild import MARKER_KEY, StateRebuild
from bridge.sink import PostgresTelemetrySink
from bridge.statestore import DeviceStateWriter
from models.migrate import migrate
from models.state import GEO_KEY, STATE_KEY_PREFIX, decode_field, state_key
from models.telemetry import Limits

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(microsecond=0)
DEVICES = [f"rb-{n}" for n in range(6)]


def message(device: str, seq: int, *, status: bytes | None = None, **fields: object) -> Decoded:
    if status is not None:
        raw = RawMessage(f"fleet/v1/{device}/status", status, None, NOW - timedelta(seconds=30))
    else:
        sample = {"seq": seq, "ts": (NOW - timedelta(seconds=1000 - seq)).isoformat(), **fields}
        raw = RawMessage(f"fleet/v1/{device}/telemetry", msgspec.json.encode(sample), None, NOW)
    decoded = decode_message(raw, now=NOW, limits=Limits())
    assert not decoded.rejections, decoded.rejections
    return decoded


def history(rng: random.Random) -> list[Decoded]:
    """Shuffled samples of several devices: not every sample has every field, some metrics have no column."""
    items = []
    for device in DEVICES:
        for seq in range(40):
            fields: dict[str, object] = {}
            if rng.random() < 0.7:
                fields["pos"] = {"lat": round(rng.uniform(-60, 60), 6), "lon": round(rng.uniform(-170, 170), 6)}
                if rng.random() < 0.5:
                    fields["pos"] = {**fields["pos"], "speed": round(rng.uniform(0, 120), 2), "heading": 90.5}  # type: ignore[dict-item]
            metrics = {
                name: round(rng.uniform(0, 99), 3)
                for name in ("fuel", "engine_temp", "odometer", "custom_gauge")
                if rng.random() < 0.5
            }
            if metrics:
                fields["metrics"] = metrics
            if rng.random() < 0.3:
                fields["agg"] = {"vibration": {"min": 1.0, "max": 9.5, "avg": rng.uniform(1, 9), "count": 50}}
                if rng.random() < 0.5:  # a field sensor's aggregate: five fields, its standard deviation too
                    fields["agg"]["vibration"]["std"] = round(rng.uniform(0, 2), 4)  # type: ignore[index]
            if rng.random() < 0.5:
                fields["quality"] = rng.randint(0, 100)
            items.append(message(device, seq, **fields))
    items.append(message(DEVICES[0], 0, status=b"offline"))
    rng.shuffle(items)
    return items


async def snapshot(client: aioredis.Redis) -> dict[bytes, dict[bytes, bytes]]:
    keys = [key async for key in client.scan_iter(match=f"{STATE_KEY_PREFIX}*")]
    return {key: await client.hgetall(key) for key in keys}


async def test_rebuild_restores_exactly_the_state_the_live_path_built(database_url: str, redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    cache = RedisStateCache(client)
    try:
        live = await live_history(database_url, client, history(random.Random(5)))
        assert len(live) == len(DEVICES)

        await client.flushall()  # Redis restarted without persistence
        rebuild = StateRebuild(client, cache, database_url, owner="test")
        report = await rebuild.check(NOW)
        assert report is not None
        assert report.devices == len(DEVICES)
        assert set(report.changed) == set(DEVICES)
        assert await snapshot(client) == live, "every field, value and (ts, boot, seq) as the live path had them"
        assert await client.zcard(GEO_KEY) == len(DEVICES)
        assert (await client.get(MARKER_KEY) or b"").startswith(b"ready:")
        assert await rebuild.check(NOW) is None, "an intact cache is not rebuilt again"
    finally:
        await client.aclose()


async def live_history(
    database_url: str, client: aioredis.Redis, items: list[Decoded]
) -> dict[bytes, dict[bytes, bytes]]:
    """Commit `items` in batches and, as the bridge does after each COMMIT, merge the batch's state plus
    the presence PostgreSQL decided into Redis and fold it into `device_state` (flushed now and then,
    as once a second); the state it built."""
    sink = PostgresTelemetrySink(database_url)
    writer = DeviceStateWriter(database_url)
    cache = RedisStateCache(client)
    try:
        for number, start in enumerate(range(0, len(items), 37)):
            batch = items[start : start + 37]
            report = await sink.write(batch)
            await cache.merge(with_presence(coalesce(batch), report.revived), seen=(), now=NOW)
            writer.add(batch)
            if number % 3 == 2:
                await writer.flush()
        await writer.flush()
    finally:
        await sink.close()
        await writer.close()
    return await snapshot(client)


async def test_rebuild_reads_the_kept_state_not_the_history(database_url: str, redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        live = await live_history(database_url, client, history(random.Random(11)))
        with psycopg.connect(database_url, autocommit=True) as conn:
            # Every reading gone (retention dropped its partitions): the last-known state remains.
            conn.execute("DELETE FROM telemetry")
            kept = conn.execute("SELECT count(DISTINCT device_id) FROM device_state").fetchone()
        assert kept == (len(DEVICES),)
        await client.flushall()
        report = await StateRebuild(client, RedisStateCache(client), database_url, owner="test").check(NOW)
        assert report is not None
        assert report.devices == len(DEVICES)
        assert await snapshot(client) == live
    finally:
        await client.aclose()


async def test_state_migration_fills_the_kept_state_from_the_history_already_stored(
    database_url: str, redis_url: str
) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        live = await live_history(database_url, client, history(random.Random(12)))
        with psycopg.connect(database_url, autocommit=True) as conn:
            # The database as it was before step 12, with this history in it.
            conn.execute("DROP TABLE device_state")
            conn.execute("DELETE FROM schema_migrations WHERE version = 12")
            assert migrate(conn) == ["0012_device_state"]
        await client.flushall()
        await StateRebuild(client, RedisStateCache(client), database_url, owner="test").check(NOW)
        assert await snapshot(client) == live, "values read back from the columns, as the live path encoded them"
    finally:
        await client.aclose()


async def test_rebuild_never_overwrites_a_newer_live_value(database_url: str, redis_url: str) -> None:
    old = [message("rb-new", seq, metrics={"fuel": 10.0 + seq}) for seq in range(5)]
    sink = PostgresTelemetrySink(database_url)
    writer = DeviceStateWriter(database_url)
    client = aioredis.Redis.from_url(redis_url)
    cache = RedisStateCache(client)
    try:
        await sink.write(old)
        writer.add(old)
        await writer.flush()
        # Redis came back empty and a newer sample was merged live before its value reached device_state.
        newer = message("rb-new", 99, metrics={"fuel": 77.5})
        await sink.write([newer])
        await cache.merge(coalesce([newer]), seen=(), now=NOW)
        await StateRebuild(client, cache, database_url, owner="test").check(NOW)
        fuel = decode_field((await client.hgetall(state_key("rb-new")))[b"m.fuel"])
        assert (fuel.value, fuel.seq) == (77.5, 99)
    finally:
        await sink.close()
        await writer.close()
        await client.aclose()


async def test_device_state_keeps_the_newest_value_whatever_order_batches_are_flushed_in(database_url: str) -> None:
    sink = PostgresTelemetrySink(database_url)
    writer = DeviceStateWriter(database_url)
    newer = message("rb-order", 9, metrics={"fuel": 90.0})
    late = message("rb-order", 3, metrics={"fuel": 30.0, "level": 33.0})
    try:
        await sink.write([newer, late])
        writer.add([newer])
        await writer.flush()
        writer.add([late])  # a late sample flushed after the newer one: fills `level`, leaves `fuel`
        assert await writer.flush() == 2
        with psycopg.connect(database_url) as conn:
            rows = conn.execute(
                "SELECT field, seq, value::text FROM device_state WHERE device_id = 'rb-order' ORDER BY field"
            ).fetchall()
    finally:
        await sink.close()
        await writer.close()
    assert rows == [("m.fuel", 9, "90.0"), ("m.level", 3, "33.0")]


async def test_rebuild_releases_the_marker_when_the_database_fails(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    unreachable = "postgresql://nobody@127.0.0.1:1/none?connect_timeout=1"
    try:
        rebuild = StateRebuild(client, RedisStateCache(client), unreachable, owner="test")
        with pytest.raises(SinkUnavailableError):
            await rebuild.check(NOW)
        assert await client.exists(MARKER_KEY) == 0, "the next check must try again"
    finally:
        await client.aclose()
