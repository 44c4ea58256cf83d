"""Login throttling: a sliding window per username and per client address, kept in Redis.

In Redis, so the limit holds across every API instance behind a load balancer. Each window is a sorted
set of attempts scored by Redis's own clock (one clock for all instances). An attempt takes a slot in
every window it belongs to before the password is checked, all or none atomically in one script, so a
burst of parallel guesses cannot overshoot the limit; a successful login gives its slots back. What is
limited is therefore failed (and in-flight) attempts: N per window per username — which also lets anyone
lock an account out for one window, the usual price of stopping guessing — and N per address.
"""

from __future__ import annotations

import math
import secrets
from dataclasses import dataclass
from typing import Final

from redis.asyncio import Redis

WINDOW_S: Final = 60
# Hash-tagged, so that every key of one attempt lives in the same slot of a Redis Cluster.
KEY_PREFIX: Final = "fleet:{login}:"

# KEYS: one sorted set per window; ARGV: window in ms, limit, this attempt's member.
# Returns 0 when the attempt took a slot in every window, else the ms until the fullest window frees one.
_RESERVE: Final = """
local now_parts = redis.call('TIME')
local now = tonumber(now_parts[1]) * 1000 + math.floor(tonumber(now_parts[2]) / 1000)
local window = tonumber(ARGV[1])
local limit = tonumber(ARGV[2])
local wait = 0
for _, key in ipairs(KEYS) do
  redis.call('ZREMRANGEBYSCORE', key, '-inf', now - window)
  if redis.call('ZCARD', key) >= limit then
    local oldest = redis.call('ZRANGE', key, 0, 0, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + window - now)
  end
end
if wait > 0 then
  return math.max(wait, 1)
end
for _, key in ipairs(KEYS) do
  redis.call('ZADD', key, now, ARGV[3])
  redis.call('PEXPIRE', key, window)
end
return 0
"""


@dataclass(frozen=True, slots=True)
class Attempt:
    """A login attempt holding a slot in each of its windows."""

    keys: tuple[str, ...]
    member: str


@dataclass(frozen=True, slots=True)
class Throttled:
    """No slot is free: try again after `retry_after_s` seconds."""

    retry_after_s: int


class LoginThrottle:
    """At most `attempts_per_window` failed or pending logins per username and per address per window."""

    def __init__(self, attempts_per_window: int, window_s: int = WINDOW_S) -> None:
        self._limit = attempts_per_window
        self._window_ms = window_s * 1000

    @staticmethod
    def keys(username: str, address: str) -> tuple[str, ...]:
        """The windows an attempt for `username` from `address` counts in."""
        return (f"{KEY_PREFIX}user:{username}", f"{KEY_PREFIX}addr:{address}")

    async def begin(self, redis: Redis, username: str, address: str) -> Attempt | Throttled:
        """Take a slot for one attempt, or say how long to wait for one."""
        attempt = Attempt(self.keys(username, address), secrets.token_hex(8))
        wait_ms = int(
            await redis.eval(_RESERVE, len(attempt.keys), *attempt.keys, self._window_ms, self._limit, attempt.member)
        )
        if wait_ms > 0:
            return Throttled(retry_after_s=max(1, math.ceil(wait_ms / 1000)))
        return attempt

    async def succeeded(self, redis: Redis, attempt: Attempt) -> None:
        """The attempt logged in: it does not count against anyone."""
        async with redis.pipeline(transaction=False) as pipe:
            for key in attempt.keys:
                pipe.zrem(key, attempt.member)
            await pipe.execute()
