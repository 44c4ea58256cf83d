"""The connections every request shares, opened and closed by the app's lifespan.

They live in `app.state` and reach handlers through Litestar dependency injection (`pool`, `redis`,
`hub`, `watch`), so a handler names what it needs and tests can build a fresh app per client.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

from litestar.datastructures import State
from litestar.di import Provide
from redis.asyncio import Redis

from api.live.hub import LiveHub
from api.live.watch import CredentialWatch
from api.pool import Pool

STATE_KEY: Final = "backends"


@dataclass(frozen=True, slots=True)
class ExportLimits:
    """What one track export may take: it waits `wait_s` for its first connection, else it is answered 503."""

    wait_s: float


@dataclass(frozen=True, slots=True)
class Backends:
    """PostgreSQL pool, Redis client, the live hub and the live connections' credential watch of one app instance."""

    pool: Pool
    export_pool: Pool
    """Track exports' own connections: however many slow downloads run, `pool` stays for everything else."""
    export_limits: ExportLimits
    redis: Redis
    hub: LiveHub
    watch: CredentialWatch


def _backends(state: State) -> Backends:
    backends = state.get(STATE_KEY)
    if not isinstance(backends, Backends):
        raise TypeError("app.state holds no Backends: the API's lifespan has not run")
    return backends


def provide_pool(state: State) -> Pool:
    """The PostgreSQL connection pool."""
    return _backends(state).pool


def provide_export_pool(state: State) -> Pool:
    """The track exports' own PostgreSQL connection pool."""
    return _backends(state).export_pool


def provide_export_limits(state: State) -> ExportLimits:
    """How long an export waits for its first connection."""
    return _backends(state).export_limits


def provide_redis(state: State) -> Redis:
    """The Redis client."""
    return _backends(state).redis


def provide_hub(state: State) -> LiveHub:
    """The live-update hub fed by this instance's stream reader."""
    return _backends(state).hub


def provide_watch(state: State) -> CredentialWatch:
    """The watch that ends live connections whose credential ended."""
    return _backends(state).watch


DEPENDENCIES: Final = {
    "pool": Provide(provide_pool, sync_to_thread=False),
    "export_pool": Provide(provide_export_pool, sync_to_thread=False),
    "export_limits": Provide(provide_export_limits, sync_to_thread=False),
    "redis": Provide(provide_redis, sync_to_thread=False),
    "hub": Provide(provide_hub, sync_to_thread=False),
    "watch": Provide(provide_watch, sync_to_thread=False),
}
