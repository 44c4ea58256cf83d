"""The Redis state cache keeps the same merge contract as the in-memory one, and writes the live stream."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from bridge.cache import RedisStateCache
from models.state import LIVE_STREAM_KEY
from tests.contracts.state_cache import Announced, check_live_announcements, check_state_cache_contract

pytestmark = pytest.mark.integration


async def test_redis_state_cache_keeps_the_contract(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await client.delete(LIVE_STREAM_KEY)
        await check_state_cache_contract(RedisStateCache(client))
        entries = await client.xrange(LIVE_STREAM_KEY)
    finally:
        await client.aclose()
    kinds = [fields[b"k"] for _, fields in entries]
    # One state entry per device whose readings changed, one presence entry per presence change, and
    # the late fuel reading of the contract as a correction.
    assert (kinds.count(b"state"), kinds.count(b"presence"), kinds.count(b"correction")) == (9, 7, 1)


async def test_redis_state_cache_announces_state_presence_and_corrections(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)

    async def announced() -> Announced:
        return [
            (
                fields[b"d"].decode(),
                fields[b"k"].decode(),
                {k.decode(): v for k, v in fields.items() if k not in {b"d", b"k"}},
            )
            for _, fields in await client.xrange(LIVE_STREAM_KEY)
        ]

    try:
        await client.delete(LIVE_STREAM_KEY, "fleet:state:c1")
        await check_live_announcements(RedisStateCache(client), announced)
    finally:
        await client.aclose()
