"""The state merge contract on the in-memory cache (the Redis one runs the same contract in integration)."""

from __future__ import annotations

from bridge.cache import MemoryStateCache
from tests.contracts.state_cache import Announced, check_live_announcements, check_state_cache_contract


async def test_memory_state_cache_keeps_the_contract() -> None:
    await check_state_cache_contract(MemoryStateCache())


async def test_memory_state_cache_announces_state_presence_and_corrections() -> None:
    cache = MemoryStateCache()

    async def announced() -> Announced:
        return cache.announced

    await check_live_announcements(cache, announced)
