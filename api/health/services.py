"""Probing the backends: Redis PING and PostgreSQL SELECT 1, each within a short deadline."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Final

from redis.asyncio import Redis

from api.health.schemas import Check, Readiness
from api.mqtt import MqttLink
from api.pool import Pool

log = logging.getLogger(__name__)

CHECK_TIMEOUT_S: Final = 2.0


async def _timed(name: str, probe: Callable[[], Awaitable[object]], timeout_s: float) -> Check:
    started = time.perf_counter()
    try:
        async with asyncio.timeout(timeout_s):
            await probe()
    except TimeoutError:
        error: str | None = f"no answer within {timeout_s} s"
    # A probe reports any failure as data: that is its whole purpose. The route is public, so the
    # driver's text (hosts, ports, user names) goes to the log, under an id the answer names.
    except Exception as exc:
        correlation = uuid.uuid4().hex
        log.warning("readiness: %s failed [correlation_id=%s]: %s: %s", name, correlation, type(exc).__name__, exc)
        error = f"{type(exc).__name__} (the API log has the details under correlation_id {correlation})"
    else:
        error = None
    return Check(ok=error is None, duration_ms=round((time.perf_counter() - started) * 1000, 1), error=error)


async def check_redis(redis: Redis, timeout_s: float = CHECK_TIMEOUT_S) -> Check:
    """PING Redis."""
    return await _timed("redis", redis.ping, timeout_s)


async def check_postgres(pool: Pool, timeout_s: float = CHECK_TIMEOUT_S) -> Check:
    """Run SELECT 1 on a pooled connection."""

    async def probe() -> None:
        async with pool.connection(timeout=timeout_s) as conn:
            await conn.execute("SELECT 1")

    return await _timed("postgres", probe, timeout_s)


def check_mqtt(link: MqttLink) -> Check:
    """Whether the MQTT link (HTTP ingest) is connected; it reconnects by itself, this only reports."""
    # The link logs its own connection errors; their text names the broker's host.
    return Check(ok=link.connected, duration_ms=0.0, error=None if link.connected else "not connected")


async def readiness(redis: Redis, pool: Pool, link: MqttLink | None = None) -> Readiness:
    """Probe both backends concurrently, and report the MQTT link when the instance has one.

    The link is reported, not required: a broker outage would otherwise take every instance, and with
    them the REST API and the operator page, out of a load balancer's rotation, while HTTP ingest
    already answers 503 by itself meanwhile.
    """
    redis_check, postgres_check = await asyncio.gather(check_redis(redis), check_postgres(pool))
    checks = {"redis": redis_check, "postgres": postgres_check}
    ready = all(check.ok for check in checks.values())
    if link is not None:
        checks["mqtt"] = check_mqtt(link)
    return Readiness(status="ready" if ready else "unavailable", checks=checks)
