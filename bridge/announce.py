"""Committed events onto the live stream: one `event` entry per event new to the database.

After the COMMIT, like the state merge: the API's stream readers push each entry to the live connections
that selected its device, never conflated (`api.live`). An event the database already held (a
redelivery) was announced when it was first stored and is not announced again.
"""

from __future__ import annotations

from collections.abc import Sequence

import msgspec
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bridge.errors import CacheUnavailableError
from models.events import StoredEvent
from models.state import LIVE_EVENT_FIELD, LIVE_KIND_EVENT, LIVE_STREAM_KEY, LIVE_STREAM_MAXLEN

_json = msgspec.json.Encoder()


async def announce_events(redis: aioredis.Redis, events: Sequence[tuple[str, StoredEvent]]) -> None:
    """XADD each (device, event) to the live stream in one round trip; raise `CacheUnavailableError`."""
    if not events:
        return
    pipe = redis.pipeline(transaction=False)
    for device_id, event in events:
        fields = {"d": device_id, "k": LIVE_KIND_EVENT, LIVE_EVENT_FIELD: _json.encode(event)}
        pipe.xadd(LIVE_STREAM_KEY, fields, maxlen=LIVE_STREAM_MAXLEN, approximate=True)  # type: ignore[arg-type]
    try:
        await pipe.execute()
    except (RedisError, OSError) as exc:
        raise CacheUnavailableError(f"events not announced on the live stream: {exc}") from exc
