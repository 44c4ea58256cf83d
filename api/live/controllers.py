"""The live WebSocket endpoint; the protocol is described in `api.live.schemas`."""

from __future__ import annotations

from typing import Any

from litestar import WebSocket, websocket
from litestar.di import NamedDependency
from redis.asyncio import Redis

from api.auth import device_group, principal_of
from api.backends import Pool
from api.live.hub import LiveHub
from api.live.session import LiveSession


@websocket("/live", name="live")
async def live(
    socket: WebSocket[Any, Any, Any],
    hub: NamedDependency[LiveHub],
    redis: NamedDependency[Redis],
    pool: NamedDependency[Pool],
) -> None:
    """Subscribe to devices and receive their snapshots, then their state changes as they happen.

    Credentials go in the handshake: `?token=<jwt or API key>` (browsers cannot set headers on a
    WebSocket), or the `Authorization` / `X-API-Key` headers.
    """
    group = device_group(principal_of(socket), pool)
    await socket.accept()
    await LiveSession(socket, hub, redis, group=group).serve()
