"""Last-known state: merge field by field, newer wins, and announce changes on the live stream.

`StateCache` is the capability; `RedisStateCache` is the real one (one Lua call per batch, atomic), and
`MemoryStateCache` follows the same contract for pure tests. Redis is off the acknowledgement path.

Presence rides along: a device that sends telemetry is marked online (by heartbeat) unless its own
status said otherwise. PostgreSQL's `devices.presence` is the presence every route reads and decides
silence (`bridge.sink`); the bridge merges what it decided here as `presence` fields, newer wins.

Every merge announces what it decided on the live stream, one entry per device and kind (`state`,
`presence`, `correction`; see `models.state`). A late value (older than the one held) leaves the state
alone but is announced as a `correction`, in the same script call: the live path never drops a reading
silently, and the merge stays one round trip per batch.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from importlib import resources
from typing import Any, Final, Protocol

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bridge.decode import Merge
from bridge.errors import CacheUnavailableError
from models.state import (
    FIELD_PRESENCE,
    GEO_KEY,
    LIVE_KIND_CORRECTION,
    LIVE_KIND_PRESENCE,
    LIVE_KIND_STATE,
    LIVE_STREAM_KEY,
    LIVE_STREAM_MAXLEN,
    SEEN_KEY,
    PresenceState,
    decode_field,
    encode_field,
    state_key,
)

DEVICES_PER_CALL: Final = 500  # bounds one script's run time, so Redis stays responsive
States = dict[str, dict[str, bytes]]  # device -> its whole state, for every device that changed
_json = msgspec.json.Encoder()


def presence_field(state: str, now: datetime) -> bytes:
    """The encoded `presence` field that heartbeat (silence or renewed telemetry) sets at `now`."""
    value = PresenceState(state="online" if state == "online" else "offline", source="heartbeat", since=now)
    return encode_field(int(now.timestamp() * 1000), 0, 0, _json.encode(value))


class StateCache(Protocol):
    """Keeps each device's newest state."""

    async def merge(self, updates: Merge, *, seen: Collection[str], now: datetime) -> States:
        """Merge newer-wins; devices in `seen` sent telemetry now. Returns the changed devices' state."""
        ...

    async def fields(self, device_id: str) -> dict[str, bytes]:
        """The stored fields of one device."""
        ...


class MemoryStateCache:
    """The same contract in dicts; for tests of the pure stages."""

    def __init__(self) -> None:
        self._state: dict[str, dict[str, bytes]] = {}
        self.announced: list[tuple[str, str, dict[str, bytes]]] = []
        """(device, live entry kind, fields) in the order the Redis cache would append them to the stream."""

    async def merge(self, updates: Merge, *, seen: Collection[str], now: datetime) -> States:
        changed: States = {}
        for device in {*updates, *seen}:
            stored = self._state.setdefault(device, {})
            changes: dict[str, bytes] = {}
            late: dict[str, bytes] = {}
            for name, (order, encoded) in updates.get(device, {}).items():
                current = stored.get(name)
                if current is None or order > _order(current):
                    stored[name] = encoded
                    changes[name] = encoded
                elif name != FIELD_PRESENCE and order < _order(current):
                    late[name] = encoded
            if device in seen:
                presence = stored.get(FIELD_PRESENCE)
                value = decode_field(presence).value if presence is not None else None
                if value is None or (value["state"] == "offline" and value["source"] == "heartbeat"):
                    stored[FIELD_PRESENCE] = changes[FIELD_PRESENCE] = presence_field("online", now)
            presence_change = changes.pop(FIELD_PRESENCE, None)
            if changes:
                self.announced.append((device, LIVE_KIND_STATE, changes))
            if presence_change is not None:
                self.announced.append((device, LIVE_KIND_PRESENCE, {FIELD_PRESENCE: presence_change}))
            if late:
                self.announced.append((device, LIVE_KIND_CORRECTION, late))
            if changes or presence_change is not None:
                changed[device] = dict(stored)
        return changed

    async def fields(self, device_id: str) -> dict[str, bytes]:
        return dict(self._state.get(device_id, {}))


class RedisStateCache:
    """State hashes, GEO index, last-seen set and live stream in Redis, merged atomically by a Lua script."""

    def __init__(self, client: aioredis.Redis, *, stream_maxlen: int = LIVE_STREAM_MAXLEN) -> None:
        self._client = client
        self._maxlen = stream_maxlen
        source = (resources.files("bridge") / "merge.lua").read_text()
        self._script = client.register_script(source)

    async def merge(self, updates: Merge, *, seen: Collection[str], now: datetime) -> States:
        changed: States = {}
        devices = sorted({*updates, *seen})
        online = presence_field("online", now)
        now_ms = int(now.timestamp() * 1000)
        for start in range(0, len(devices), DEVICES_PER_CALL):
            chunk = devices[start : start + DEVICES_PER_CALL]
            keys: list[Any] = [state_key(device) for device in chunk]
            keys += [GEO_KEY, LIVE_STREAM_KEY, SEEN_KEY]
            args: list[Any] = [self._maxlen, now_ms, online]
            for device in chunk:
                fields = updates.get(device, {})
                args += [device, 1 if device in seen else 0, len(fields)]
                for name, (_, encoded) in fields.items():
                    args += [name, encoded]
            try:
                reply = await self._script(keys=keys, args=args)
            except (RedisError, OSError) as exc:
                raise CacheUnavailableError(f"Redis state merge failed: {exc}") from exc
            changed.update(_states(list(reply)))
        return changed

    async def fields(self, device_id: str) -> dict[str, bytes]:
        try:
            raw = await self._client.hgetall(state_key(device_id))
        except (RedisError, OSError) as exc:
            raise CacheUnavailableError(f"Redis read failed: {exc}") from exc
        return {_text(key): _bytes(value) for key, value in raw.items()}


def _states(reply: list[bytes]) -> States:
    states: States = {}
    i = 0
    while i < len(reply):
        device, count = _text(reply[i]), int(reply[i + 1])
        pairs = reply[i + 2 : i + 2 + 2 * count]
        states[device] = {_text(pairs[n]): _bytes(pairs[n + 1]) for n in range(0, len(pairs), 2)}
        i += 2 + 2 * count
    return states


def _order(encoded: bytes) -> tuple[int, int, int]:
    ts, boot, seq = encoded.split(b":", 3)[:3]
    return int(ts), int(boot), int(seq)


def _text(value: bytes | str) -> str:
    return value.decode() if isinstance(value, bytes) else value


def _bytes(value: bytes | str) -> bytes:
    return value.encode() if isinstance(value, str) else value
