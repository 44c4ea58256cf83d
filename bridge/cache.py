"""Last-known state: merge field by field, newer device time wins, and announce changes on the live stream.

`StateCache` is the capability; `RedisStateCache` is the real one (one Lua call per batch, atomic), and
`MemoryStateCache` follows the same contract for pure tests. Redis is off the acknowledgement path.
"""

from __future__ import annotations

from importlib import resources
from typing import Any, Final, Protocol

import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bridge.decode import Merge
from bridge.errors import CacheUnavailableError
from models.state import GEO_KEY, LIVE_STREAM_KEY, LIVE_STREAM_MAXLEN, state_key

DEVICES_PER_CALL: Final = 500  # bounds one script's run time, so Redis stays responsive


class StateCache(Protocol):
    """Keeps each device's newest state."""

    async def merge(self, updates: Merge) -> int:
        """Merge newer-wins; return how many devices changed."""
        ...

    async def fields(self, device_id: str) -> dict[str, bytes]:
        """The stored fields of one device."""
        ...


class MemoryStateCache:
    """The same merge in a dict; for tests of the pure stages."""

    def __init__(self) -> None:
        self._state: dict[str, dict[str, tuple[tuple[int, int, int], bytes]]] = {}
        self.announced: list[tuple[str, dict[str, bytes]]] = []

    async def merge(self, updates: Merge) -> int:
        changed = 0
        for device, fields in updates.items():
            stored = self._state.setdefault(device, {})
            changes: dict[str, bytes] = {}
            for name, (order, encoded) in fields.items():
                current = stored.get(name)
                if current is None or order > current[0]:
                    stored[name] = (order, encoded)
                    changes[name] = encoded
            if changes:
                changed += 1
                self.announced.append((device, changes))
        return changed

    async def fields(self, device_id: str) -> dict[str, bytes]:
        return {name: encoded for name, (_, encoded) in self._state.get(device_id, {}).items()}


class RedisStateCache:
    """State hashes, GEO index and live stream in Redis, merged atomically by a Lua script."""

    def __init__(self, client: aioredis.Redis, *, stream_maxlen: int = LIVE_STREAM_MAXLEN) -> None:
        self._client = client
        self._maxlen = stream_maxlen
        source = (resources.files("bridge") / "merge.lua").read_text()
        self._script = client.register_script(source)

    async def merge(self, updates: Merge) -> int:
        changed = 0
        devices = list(updates.items())
        for start in range(0, len(devices), DEVICES_PER_CALL):
            chunk = devices[start : start + DEVICES_PER_CALL]
            keys: list[Any] = [state_key(device) for device, _ in chunk]
            keys += [GEO_KEY, LIVE_STREAM_KEY]
            args: list[Any] = [self._maxlen]
            for device, fields in chunk:
                args += [device, len(fields)]
                for name, (_, encoded) in fields.items():
                    args += [name, encoded]
            try:
                changed += int(await self._script(keys=keys, args=args))
            except (RedisError, OSError) as exc:
                raise CacheUnavailableError(f"Redis state merge failed: {exc}") from exc
        return changed

    async def fields(self, device_id: str) -> dict[str, bytes]:
        try:
            raw = await self._client.hgetall(state_key(device_id))
        except (RedisError, OSError) as exc:
            raise CacheUnavailableError(f"Redis read failed: {exc}") from exc
        return {_text(key): _bytes(value) for key, value in raw.items()}


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value
