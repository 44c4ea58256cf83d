"""The Redis state cache keeps the same merge contract as the in-memory one."""

from __future__ import annotations

import pytest
import redis.asyncio as aioredis

from bridge.cache import RedisStateCache
from tests.contracts.state_cache import check_state_cache_contract

pytestmark = pytest.mark.integration


async def test_redis_state_cache_keeps_the_contract(redis_url: str) -> None:
    client = aioredis.Redis.from_url(redis_url)
    try:
        await check_state_cache_contract(RedisStateCache(client))
        # One live entry per device whose state a call changed.
        assert await client.xlen("fleet:live") == 13
    finally:
        await client.aclose()
