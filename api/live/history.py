"""The stream's bounded history: whether a cursor is still covered, and reading the entries after it.

The stream is capped (`XADD MAXLEN ~`), so a cursor can fall behind what is kept. Redis 7 reports how
many entries were ever added and which is the oldest kept; if any entry was trimmed and the cursor is
older than the oldest kept, entries after the cursor may be gone, and the client is told to start
again from snapshots (a `reset`) rather than receiving a history with a silent hole. This is
conservative: a cursor naming exactly the last trimmed entry is reset too.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from redis.asyncio import Redis
from redis.exceptions import ResponseError

from api.live.cursor import START, StreamId, stream_id
from api.live.stream import stream_entries
from models.state import GEO_KEY, LIVE_STREAM_KEY

PAGE_ENTRIES: Final = 500

Entry = tuple[str, Mapping[Any, bytes | str]]


@dataclass(frozen=True, slots=True)
class Expired:
    """Why the history after a cursor cannot be replayed, and the oldest cursor that can be."""

    reason: str
    oldest: str | None


def _id_text(value: object) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


async def newest(redis: Redis, key: str = LIVE_STREAM_KEY) -> StreamId:
    """The id of the newest entry ever added (START for a stream that does not exist)."""
    try:
        info = await redis.xinfo_stream(key)
    except ResponseError:  # no such key
        return START
    return stream_id(_id_text(info["last-generated-id"]))


async def expired(redis: Redis, since: StreamId, key: str = LIVE_STREAM_KEY) -> Expired | None:
    """None when every entry after `since` is still in the stream; else why not."""
    try:
        info = await redis.xinfo_stream(key)
    except ResponseError:
        return None if since == START else Expired("the live stream holds no history", None)
    last = stream_id(_id_text(info["last-generated-id"]))
    first_entry = info.get("first-entry")
    oldest = stream_id(_id_text(first_entry[0])) if first_entry else None
    if since > last:
        return Expired("cursor is ahead of the live stream (was the stream reset?)", str(oldest) if oldest else None)
    trimmed = int(info.get("entries-added", 0)) > int(info["length"])
    if trimmed and (oldest is None or since < oldest.previous()):
        return Expired("cursor is older than the history the live stream keeps", str(oldest) if oldest else None)
    return None


async def read_after(
    redis: Redis,
    after: StreamId,
    *,
    upto: StreamId | None = None,
    count: int = PAGE_ENTRIES,
    key: str = LIVE_STREAM_KEY,
) -> list[Entry]:
    """Up to `count` entries after `after` (and not after `upto`), oldest first."""
    reply = await redis.xrange(key, min=f"({after}", max=str(upto) if upto is not None else "+", count=count)
    return list(stream_entries([[key, reply]]))


async def positions(redis: Redis, device_ids: Iterable[str]) -> dict[str, tuple[float, float]]:
    """Current (lon, lat) of the devices the GEO index knows."""
    ids = list(dict.fromkeys(device_ids))
    if not ids:
        return {}
    found = await redis.geopos(GEO_KEY, *ids)
    return {device_id: (float(at[0]), float(at[1])) for device_id, at in zip(ids, found, strict=True) if at}
