"""The live WebSocket endpoint; the protocol is described in `api.live.schemas`."""

from __future__ import annotations

from typing import Any

from litestar import WebSocket, websocket
from litestar.di import NamedDependency
from redis.asyncio import Redis

from api.live.hub import LiveHub
from api.live.session import LiveSession


@websocket("/live", name="live")
async def live(socket: WebSocket[Any, Any, Any], hub: NamedDependency[LiveHub], redis: NamedDependency[Redis]) -> None:
    """Subscribe to devices and receive their snapshots, then their state changes as they happen."""
    await socket.accept()
    await LiveSession(socket, hub, redis).serve()
