"""Device credentials for HTTP ingest against the real `mqtt_accounts`, and the ingest rate limits in real Redis.

The credential cache takes its clock as an argument, so expiry is tested without sleeping.
"""

from __future__ import annotations

from typing import Any

import psycopg
import pytest
import redis.asyncio as aioredis

from api.ingest.credentials import BasicCredentials, DeviceCredentials, Verdict
from api.ingest.limits import IngestLimits
from broker import accounts
from broker.accounts import DeviceSpec
from broker.acl import Role

pytestmark = pytest.mark.integration


async def verdicts(
    database_url: str, checker: DeviceCredentials, attempts: list[tuple[str, str]], now: float
) -> list[Verdict]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        return [await checker.check(conn, BasicCredentials(user, secret), now) for user, secret in attempts]


def provision(database_url: str) -> tuple[Any, Any]:
    with psycopg.connect(database_url, autocommit=True) as conn:
        a, b = accounts.import_devices(conn, [DeviceSpec("cred-a"), DeviceSpec("cred-b")])
    return a, b


async def test_credentials_accept_only_a_devices_own_current_secret(database_url: str) -> None:
    a, b = provision(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        bridge = accounts.add_service_account(conn, Role.BRIDGE, "cred-bridge")
    checker = DeviceCredentials(cache_s=10)

    found = await verdicts(
        database_url,
        checker,
        [
            (a.username, a.secret),
            (a.username, b.secret),
            ("cred-ghost", a.secret),
            (bridge.username, bridge.secret),
            ("a/b", "x"),
        ],
        now=0.0,
    )

    assert found == [Verdict.VALID, Verdict.INVALID, Verdict.INVALID, Verdict.INVALID, Verdict.INVALID]


async def test_credentials_are_remembered_for_the_cache_time_only_and_never_when_wrong(database_url: str) -> None:
    a, _ = provision(database_url)
    checker = DeviceCredentials(cache_s=10)
    right, wrong = BasicCredentials(a.username, a.secret), BasicCredentials(a.username, "not-the-secret")

    assert not checker.remembered(right, 0.0)
    assert await verdicts(database_url, checker, [(a.username, a.secret)], now=100.0) == [Verdict.VALID]
    with psycopg.connect(database_url, autocommit=True) as conn:
        accounts.revoke(conn, a.username)

    assert checker.remembered(right, 109.9), "within the cache time the revocation is not seen yet"
    assert not checker.remembered(wrong, 105.0)
    assert not checker.remembered(right, 110.0)
    assert await verdicts(database_url, checker, [(a.username, a.secret)], now=110.0) == [Verdict.INVALID]


async def test_credentials_of_a_disabled_device_are_disabled_not_remembered(database_url: str) -> None:
    a, _ = provision(database_url)
    with psycopg.connect(database_url, autocommit=True) as conn:
        accounts.set_device_disabled(conn, a.username, True)
    checker = DeviceCredentials(cache_s=10)

    assert await verdicts(database_url, checker, [(a.username, a.secret)], now=0.0) == [Verdict.DISABLED]
    assert not checker.remembered(BasicCredentials(a.username, a.secret), 1.0)


async def test_a_zero_cache_time_checks_every_time(database_url: str) -> None:
    a, _ = provision(database_url)
    checker = DeviceCredentials(cache_s=0)

    assert await verdicts(database_url, checker, [(a.username, a.secret)], now=0.0) == [Verdict.VALID]
    assert not checker.remembered(BasicCredentials(a.username, a.secret), 0.0)


async def test_limits_let_a_burst_through_then_throttle_per_device(redis_url: str) -> None:
    limits = IngestLimits(messages_per_minute=60, auth_failures_per_minute=2)
    client = aioredis.Redis.from_url(redis_url)
    try:
        burst = await limits.take_messages(client, "dev-1", 60)
        over = await limits.take_messages(client, "dev-1", 1)
        other = await limits.take_messages(client, "dev-2", 60)
    finally:
        await client.aclose()

    assert burst is None
    assert over is not None
    assert over.retry_after_s == 1, "one message a second comes back into the budget"
    assert other is None


async def test_limits_give_back_the_slot_of_a_right_secret(redis_url: str) -> None:
    limits = IngestLimits(messages_per_minute=60, auth_failures_per_minute=2)
    client = aioredis.Redis.from_url(redis_url)
    try:
        for _ in range(5):
            assert await limits.reserve_auth(client, "10.0.0.1") is None
            await limits.release_auth(client, "10.0.0.1")
        failures = [await limits.reserve_auth(client, "10.0.0.1") for _ in range(3)]
    finally:
        await client.aclose()

    assert failures[:2] == [None, None]
    assert failures[2] is not None
    assert 1 <= failures[2].retry_after_s <= 30
