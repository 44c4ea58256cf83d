"""The one reader per app instance of the Redis live stream `fleet:live`.

Every API instance runs its own reader from the newest entry at its start, so any instance can serve
any client. Entries are decoded once here and shared by every connection.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from redis.asyncio import Redis
from redis.exceptions import RedisError

from api.devices.services import decode_state
from api.live.cursor import stream_id
from api.live.event import LiveEvent
from api.live.hub import LiveHub
from api.live.update import LiveUpdate
from models.events import StoredEvent
from models.state import LIVE_EVENT_FIELD, LIVE_KIND_EVENT, LIVE_KINDS, LIVE_STREAM_KEY, RESERVED_LIVE_FIELDS
from models.topics import is_device_id

log = logging.getLogger(__name__)

READ_BLOCK_MS: Final = 2000  # well below redis-py's 5 s socket timeout, so an idle read never times out
READ_MAX_ENTRIES: Final = 1000
RETRY_MIN_S: Final = 0.1
RETRY_MAX_S: Final = 5.0
START_EMPTY_STREAM: Final = "0-0"
_STORED_EVENT = msgspec.json.Decoder(StoredEvent)


@dataclass(frozen=True, slots=True)
class BadEntry:
    """A stream entry that cannot be delivered, and why."""

    entry_id: str
    reason: str


def _text(value: bytes | str) -> str:
    return value.decode(errors="replace") if isinstance(value, bytes) else value


def parse_entry(entry_id: str, fields: Mapping[Any, bytes | str]) -> LiveUpdate | LiveEvent | BadEntry | None:
    """Turn one stream entry into a `LiveUpdate` or a `LiveEvent`; None for kinds this reader does not serve."""
    named = {_text(name): value for name, value in fields.items()}
    kind = _text(named.get("k", b""))
    if kind not in LIVE_KINDS and kind != LIVE_KIND_EVENT:
        return None
    device_id = _text(named.get("d", b""))
    if not is_device_id(device_id):
        return BadEntry(entry_id, f"device id {device_id!r} is not valid")
    if kind == LIVE_KIND_EVENT:
        try:
            return LiveEvent(device_id, _STORED_EVENT.decode(named.get(LIVE_EVENT_FIELD, b"")), entry_id)
        except msgspec.DecodeError as exc:
            return BadEntry(entry_id, f"event not decodable: {exc}")
    changed = {name: value for name, value in named.items() if name not in RESERVED_LIVE_FIELDS}
    changes = decode_state(device_id, changed)
    if (
        changes.position is None
        and not changes.metrics
        and not changes.aggregates
        and changes.quality is None
        and changes.presence is None
    ):
        return BadEntry(entry_id, "no decodable state fields")
    return LiveUpdate(device_id, changes, entry_id, kind)


def stream_entries(reply: object) -> Iterator[tuple[str, Mapping[Any, bytes | str]]]:
    """The (entry id, fields) pairs of an XREAD reply in RESP2 form: `[[stream, [(id, fields), ...]], ...]`."""
    if not isinstance(reply, list):
        return
    for stream in reply:
        for entry_id, fields in stream[1]:
            if fields is not None:  # an entry deleted between XADD and XREAD comes back without fields
                yield _text(entry_id), fields


class LiveStreamReader:
    """Reads `fleet:live` in a loop and publishes each state update to the hub.

    The reader owns its reconnect policy: on a Redis error it logs, counts, waits with exponential
    backoff (RETRY_MIN_S…RETRY_MAX_S) and resumes after the last entry it delivered, so an outage
    shorter than the stream's capacity loses nothing.
    """

    def __init__(
        self,
        redis: Redis,
        hub: LiveHub,
        *,
        key: str = LIVE_STREAM_KEY,
        block_ms: int = READ_BLOCK_MS,
        max_entries: int = READ_MAX_ENTRIES,
    ) -> None:
        self._redis = redis
        self._hub = hub
        self._key = key
        self._block_ms = block_ms
        self._max_entries = max_entries
        self.last_id: str | None = None
        self.delivered = 0
        self.bad = 0
        self.failures = 0

    async def start_from_latest(self) -> None:
        """Start after the newest entry now in the stream: every entry added from now on is read."""
        self.last_id = await self._newest_id()
        self._hub.position = stream_id(self.last_id)

    async def _newest_id(self) -> str:
        newest = await self._redis.xrevrange(self._key, count=1)
        return _text(newest[0][0]) if newest and newest[0][0] is not None else START_EMPTY_STREAM

    async def run(self) -> None:
        """Read and publish until cancelled."""
        delay_s = RETRY_MIN_S
        while True:
            try:
                last_id = self.last_id
                if last_id is None:
                    last_id = await self._newest_id()
                    self.last_id = last_id
                    self._hub.position = stream_id(last_id)
                reply = await self._redis.xread({self._key: last_id}, count=self._max_entries, block=self._block_ms)
            except (RedisError, OSError) as exc:
                self.failures += 1
                log.warning("reading %s failed (%s); retrying in %.1f s", self._key, exc, delay_s)
                await asyncio.sleep(delay_s)
                delay_s = min(delay_s * 2, RETRY_MAX_S)
                continue
            delay_s = RETRY_MIN_S
            read = False
            for entry_id, fields in stream_entries(reply):
                self.last_id = entry_id
                self._hub.position = stream_id(entry_id)
                self._publish(entry_id, fields)
                read = True
            if read:
                self._hub.advanced()

    def _publish(self, entry_id: str, fields: Mapping[Any, bytes | str]) -> None:
        parsed = parse_entry(entry_id, fields)
        if isinstance(parsed, BadEntry):
            self.bad += 1
            log.warning("skipping live entry %s: %s", parsed.entry_id, parsed.reason)
        elif isinstance(parsed, LiveEvent):
            self.delivered += 1
            self._hub.publish_event(parsed)
        elif parsed is not None:
            self.delivered += 1
            self._hub.publish(parsed)
