"""Rebuild every device's last-known state in Redis from PostgreSQL when Redis has lost it.

Redis is a cache kept without persistence (`stack/redis.py`): a restarted or flushed Redis comes back
empty, and until a device next reports, its state, position and presence would be missing from the API.
The bridge notices by a marker key, `fleet:cache:ready`, that lives only as long as Redis's data does:

* every `REBUILD_CHECK_INTERVAL_S` the bridge tries `SET fleet:cache:ready rebuilding:<client id> NX EX
  <lease>`; when the key exists (the normal case) that is one cheap round trip and nothing else;
* whoever takes the key reads the newest value of every state field of every registered device from
  PostgreSQL's `device_state` (and each device's presence from the registry), writes it through the
  same merge script
  the live path uses, and then marks the key `ready` without expiry. Because the merge is newer-wins by
  (device time, boot, seq), a live update that lands during the rebuild is never overwritten by an
  older value from the database, and the rebuild may run concurrently on several bridge instances;
* if the database fails half-way, the key is deleted so that the next check tries again; if the
  rebuilding instance dies, the lease expires and another instance (or the restarted one) takes over.

The marker is set *before* reading the database: a Redis emptied again while a rebuild runs loses the
marker too, so the next check rebuilds once more rather than trusting a state built into the old Redis.

`device_state` (migration 0012) holds one row per device and state field, kept from the committed
batches by `bridge.statestore` (once a second, and flushed by this process just before each check): a
rebuild reads devices x fields rows, however long the history
(it used to search every device's history for each field, which grew with the readings stored). Its
values are the live path's own JSON, decoded into the sample types and merged like a batch, so a
rebuilt field is byte for byte what the live path wrote.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Final

import msgspec
import psycopg
import redis.asyncio as aioredis
from redis.exceptions import RedisError

from bridge.cache import StateCache, States
from bridge.decode import Decoded, PresenceUpdate, coalesce
from bridge.errors import CacheUnavailableError, SinkUnavailableError
from models.state import AGGREGATE_PREFIX, FIELD_POSITION, FIELD_QUALITY, METRIC_PREFIX
from models.telemetry import Aggregate, Position, Sample
from models.topics import TopicKind, device_topic

log = logging.getLogger(__name__)

MARKER_KEY: Final = "fleet:cache:ready"
REBUILD_CHECK_INTERVAL_S: Final = 1.0
REBUILD_LEASE_S: Final = 300  # a rebuild that takes longer is presumed dead and started again

_STATE_SQL: Final = "SELECT device_id, field, ts, boot, seq, value::text FROM device_state"
_POSITION = msgspec.json.Decoder(Position)
_METRIC = msgspec.json.Decoder(float)
_AGGREGATE = msgspec.json.Decoder(Aggregate)
_QUALITY = msgspec.json.Decoder(int)
_PRESENCE_SQL: Final = (
    "SELECT id, presence, presence_source, presence_since FROM devices"
    " WHERE presence IS NOT NULL AND presence_source IS NOT NULL AND presence_since IS NOT NULL"
)


@dataclass(frozen=True, slots=True)
class RebuildReport:
    """What one rebuild did: devices read from PostgreSQL and devices whose cached state changed."""

    devices: int
    changed: States


class StateRebuild:
    """Watches the marker and rebuilds the cache from the database when it is gone."""

    def __init__(self, redis: aioredis.Redis, cache: StateCache, database_url: str, *, owner: str) -> None:
        self._redis = redis
        self._cache = cache
        self._url = database_url
        self._owner = f"rebuilding:{owner}"
        self._started = False  # whether a check has run: an empty cache at start is expected

    async def check(self, now: datetime) -> RebuildReport | None:
        """Rebuild if the marker is missing; None when the cache is intact or another instance rebuilds.

        Raises `CacheUnavailableError` when Redis cannot be reached (try again later) and
        `SinkUnavailableError` when the database failed mid-way (the marker is then released).
        """
        try:
            taken = await self._redis.set(MARKER_KEY, self._owner, nx=True, ex=REBUILD_LEASE_S)
        except (RedisError, OSError) as exc:
            raise CacheUnavailableError(f"cache marker not readable: {exc}") from exc
        at_start, self._started = not self._started, True
        if not taken:
            return None
        # At start an empty cache is the normal case (a first start, a new Redis); later it means Redis
        # lost its data while the bridge ran.
        log.log(
            logging.INFO if at_start else logging.WARNING,
            "the state cache is empty (no %s): rebuilding it from PostgreSQL",
            MARKER_KEY,
        )
        try:
            updates = await self._read(now)
        except psycopg.Error as exc:
            await self._release()
            raise SinkUnavailableError(f"state rebuild could not read PostgreSQL: {exc}") from exc
        merge = coalesce(updates)
        changed = await self._cache.merge(merge, seen=(), now=now) if merge else {}
        try:
            await self._redis.set(MARKER_KEY, f"ready:{now.isoformat()}")
        except (RedisError, OSError) as exc:
            raise CacheUnavailableError(f"cache marker not written: {exc}") from exc
        log.info("state cache rebuilt: %d devices read, %d changed", len(updates), len(changed))
        return RebuildReport(devices=len(updates), changed=changed)

    async def _release(self) -> None:
        try:
            if await self._redis.get(MARKER_KEY) == self._owner.encode():
                await self._redis.delete(MARKER_KEY)
        except (RedisError, OSError) as exc:
            log.warning("cache marker not released (%s); its lease expires by itself", exc)

    async def _read(self, now: datetime) -> list[Decoded]:
        """One `Decoded` per device, its samples each carrying one newest field, for `coalesce`."""
        samples: dict[str, list[Sample]] = {}
        presence: dict[str, PresenceUpdate] = {}

        def add(device: str, ts: datetime, boot: int, seq: int, **fields: Any) -> None:
            samples.setdefault(device, []).append(Sample(seq=seq, ts=ts, boot=boot, **fields))

        # No JIT: compiling costs more than these small reads take.
        async with await psycopg.AsyncConnection.connect(
            self._url, application_name="fleetbridge-rebuild", options="-c jit=off"
        ) as conn:
            for device, name, ts, boot, seq, value in await _rows(conn, _STATE_SQL):
                fields = _sample_fields(name, value)
                if fields is None:
                    log.warning("device_state of %s: field %r unknown or unreadable, skipped", device, name)
                    continue
                add(device, ts, boot, seq, **fields)
            for device, state, source, since in await _rows(conn, _PRESENCE_SQL):
                # Ordered by when it was decided, as the live path orders statuses it receives.
                presence[device] = PresenceUpdate(device, state, source, since, int(since.timestamp() * 1000))
        return [
            Decoded(
                device,
                device_topic(device, TopicKind.TELEMETRY),
                b"",
                now.astimezone(UTC),
                samples=samples.get(device, []),
                presence=presence.get(device),
            )
            for device in sorted({*samples, *presence})
        ]


def _sample_fields(name: str, value: str) -> dict[str, Any] | None:
    """The `Sample` fields that carry state field `name` with its stored JSON `value`; None when the
    field is unknown or its value unreadable."""
    try:
        if name == FIELD_POSITION:
            return {"pos": _POSITION.decode(value)}
        if name == FIELD_QUALITY:
            return {"quality": _QUALITY.decode(value)}
        if name.startswith(METRIC_PREFIX):
            return {"metrics": {name.removeprefix(METRIC_PREFIX): _METRIC.decode(value)}}
        if name.startswith(AGGREGATE_PREFIX):
            return {"agg": {name.removeprefix(AGGREGATE_PREFIX): _AGGREGATE.decode(value)}}
    except msgspec.DecodeError:  # ValidationError included
        return None
    return None


async def _rows(conn: psycopg.AsyncConnection[Any], statement: str) -> list[tuple[Any, ...]]:
    cursor = await conn.execute(statement)
    return await cursor.fetchall()
