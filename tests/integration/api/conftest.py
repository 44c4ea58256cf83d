"""Fixtures running the API for real: uvicorn in the test's event loop, against the session's servers.

Every API route but the public ones needs credentials: `http` is a client logged in as an admin (made
for the test by `admin_token`), `anonymous` a client without credentials. Accounts made here store a
cheap argon2id hash (computed once per session), so logging in costs milliseconds, not 0.15 s.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis
from argon2 import PasswordHasher

from api.accounts.roles import Role
from api.auth import TokenIssuer, build_auth
from api.server import running
from config import Settings, load_settings

# Long enough for HS256 (32 bytes); fixed, so that tokens hold on every instance a test starts.
TEST_JWT_SECRET = "test-secret-of-the-api-tests-0123456789"
ADMIN_NAME = "admin"
TEST_PASSWORD = "correct horse battery staple"


@functools.cache
def cheap_password_hash() -> str:
    """An argon2id hash of TEST_PASSWORD with the smallest parameters: verifies in about a millisecond."""
    return PasswordHasher(time_cost=1, memory_cost=8, parallelism=1).hash(TEST_PASSWORD)


async def add_account(database_url: str, username: str, role: str) -> None:
    """Store an account whose password is TEST_PASSWORD."""
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO users (username, role, password_hash) VALUES (%s, %s, %s)",
            (username, role, cheap_password_hash()),
        )


async def log_in(client: httpx.AsyncClient, username: str, password: str = TEST_PASSWORD) -> str:
    """Log in through the API (as a form, like OAuth2 clients) and return the access token."""
    response = await client.post("/api/v1/auth/token", data={"username": username, "password": password})
    assert response.status_code == 200, response.text
    token: str = response.json()["access_token"]
    return token


def mint_token(settings: Settings, username: str, role: str) -> str:
    """A token as the login route would issue it for these settings, without an account or a login."""
    return TokenIssuer(build_auth(settings.api)).issue(username, Role(role))


def settings_for(redis_url: str, database_url: str) -> Settings:
    """Settings pointing the API at these servers, with the tests' token secret."""
    return load_settings(
        {
            "FLEETBRIDGE_REDIS_URL": redis_url,
            "FLEETBRIDGE_DATABASE_URL": database_url,
            "FLEETBRIDGE_API_JWT_SECRET": TEST_JWT_SECRET,
        }
    )


@pytest.fixture
def api_settings(redis_url: str, database_url: str) -> Settings:
    """Settings pointing the API at this test's Redis and database."""
    return settings_for(redis_url, database_url)


@pytest.fixture
async def api_url(api_settings: Settings) -> AsyncIterator[str]:
    """Base URL of a fresh API instance, serving for the length of one test."""
    async with running(api_settings) as url:
        yield url


@pytest.fixture
async def anonymous(api_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the test's API instance, without credentials."""
    async with httpx.AsyncClient(base_url=api_url, timeout=10) as client:
        yield client


@pytest.fixture
async def admin_token(anonymous: httpx.AsyncClient, database_url: str) -> str:
    """An access token of an admin account made for this test."""
    await add_account(database_url, ADMIN_NAME, "admin")
    return await log_in(anonymous, ADMIN_NAME)


@pytest.fixture
async def http(api_url: str, admin_token: str) -> AsyncIterator[httpx.AsyncClient]:
    """An HTTP client of the test's API instance, logged in as an admin."""
    headers = {"Authorization": f"Bearer {admin_token}"}
    async with httpx.AsyncClient(base_url=api_url, timeout=10, headers=headers) as client:
        yield client


@pytest.fixture
async def redis_client(redis_url: str) -> AsyncIterator[aioredis.Redis]:
    """A Redis client for the test to arrange state and publish live updates."""
    client = aioredis.Redis.from_url(redis_url)
    try:
        yield client
    finally:
        await client.aclose()
