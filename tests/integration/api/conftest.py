"""Fixtures running the API for real: uvicorn in the test's event loop, against the session's servers."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
import redis.asyncio as aioredis

from api.server import running
from config import Settings, load_settings


@pytest.fixture
def api_settings(redis_url: str, database_url: str) -> Settings:
    """Settings pointing the API at this test's Redis and database."""
    return load_settings({"FLEETBRIDGE_REDIS_URL": redis_url, "FLEETBRIDGE_DATABASE_URL": database_url})


@pytest.fixture
async def api_url(api_settings: Settings) -> AsyncIterator[str]:
    """Base URL of a fresh API instance, serving for the length of one test."""
    async with running(api_settings) as url:
        yield url


@pytest.fixture
async def http(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client bound to the test's API instance."""
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        yield client


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A Redis client for the test to arrange state and publish live updates."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()
