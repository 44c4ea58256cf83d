"""Ingest rate limits, kept in Redis so that they hold across API instances: messages per device, and
failed authentications per client address.

Each limit is a GCRA bucket (the generic cell rate algorithm): one key per device or address holding
the time at which its budget is whole again, moved by one Lua script on Redis's own clock (one clock for
all instances). A bucket of `limit` per minute lets a burst of `limit` through, then `limit` per minute;
a request of N messages costs N at once, all or nothing. Compared with the login throttle's sorted sets
(api/accounts/limits.py), a bucket is one small key whatever the rate, which matters at thousands of
messages per minute.

Failed authentications: a slot is taken before the secret is checked and given back when it was right,
so parallel guesses cannot overshoot the limit (as for logins).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis

WINDOW_S: Final = 60
# Hash-tagged, so that the keys of ingest live in one slot of a Redis Cluster, apart from login's.
KEY_PREFIX: Final = "fleet:{ingest}:"

# KEYS[1]: the bucket; ARGV: window in ms, limit per window, cost (negative: give back).
# Returns 0 when the cost was taken (or given back), else the ms until it could be.
_TAKE: Final = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local window = tonumber(ARGV[1])
local interval = window / tonumber(ARGV[2])
local cost = tonumber(ARGV[3])
local full_at = tonumber(redis.call('GET', KEYS[1]) or now)
if full_at < now then full_at = now end
local next_full_at = full_at + cost * interval
if cost > 0 and next_full_at - window > now then
  return math.max(1, math.ceil(next_full_at - window - now))
end
if next_full_at <= now then
  redis.call('DEL', KEYS[1])
else
  redis.call('SET', KEYS[1], string.format('%.3f', next_full_at), 'PX', math.ceil(next_full_at - now))
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Throttled:
    """Over the limit: try again after `retry_after_s` seconds."""

    retry_after_s: int


class IngestLimits:
    """At most `messages_per_minute` per device and `auth_failures_per_minute` failed checks per address."""

    def __init__(self, messages_per_minute: int, auth_failures_per_minute: int) -> None:
        self.messages_per_minute = messages_per_minute
        self._auth_failures = auth_failures_per_minute

    async def take_messages(self, redis: Redis, device_id: str, count: int) -> Throttled | None:
        """Charge `count` messages to the device; None when they fit. `count` must not exceed the limit."""
        return await self._take(redis, f"{KEY_PREFIX}device:{device_id}", self.messages_per_minute, count)

    async def reserve_auth(self, redis: Redis, address: str) -> Throttled | None:
        """Take a failed-authentication slot of `address` before checking a secret; None when one was free."""
        return await self._take(redis, f"{KEY_PREFIX}auth:{address}", self._auth_failures, 1)

    async def release_auth(self, redis: Redis, address: str) -> None:
        """The secret was right: the slot taken by `reserve_auth` does not count."""
        await self._take(redis, f"{KEY_PREFIX}auth:{address}", self._auth_failures, -1)

    @staticmethod
    async def _take(redis: Redis, key: str, limit: int, cost: int) -> Throttled | None:
        wait_ms = int(await redis.eval(_TAKE, 1, key, WINDOW_S * 1000, limit, cost))
        return Throttled(max(1, math.ceil(wait_ms / 1000))) if wait_ms > 0 else None
