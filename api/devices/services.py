"""Reading the device registry from PostgreSQL and last-known state from Redis."""

from __future__ import annotations

import logging
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from psycopg.rows import dict_row
from redis.asyncio import Redis

from api.devices.schemas import Device, DevicePage, Status
from api.pool import Pool
from models.state import STATE_KEY_PREFIX, DeviceState, state_from_fields, state_key

log = logging.getLogger(__name__)

DEVICES_PAGE_MAX: Final = 1000
DEVICES_PAGE_DEFAULT: Final = 100
SCAN_BATCH_KEYS: Final = 1000
FIELD_LOG_BYTES: Final = 200

_DEVICE_COLUMNS: Final = "id, kind, name, group_name, metadata, created_at, last_seen, disabled, gateway_id, site"
# Every filter is a constant fragment with named parameters; a statement holds only the fragments of the
# filters given, rather than `%s IS NULL OR …`, which a cached generic plan cannot serve by index.
_FILTERS: Final = {
    "after": "id > %(after)s",
    "visible_group": "group_name = %(visible_group)s",
    "group": "group_name = %(group)s",
    "kind": "kind = %(kind)s",
    # ICU's root collation folds case for all of Unicode: the C locale of the stack's database (and
    # every libc locale's own rules) would leave `Ä` and `ä` apart.
    "q": '(id ILIKE %(q)s COLLATE "und-x-icu" OR name ILIKE %(q)s COLLATE "und-x-icu")',
}
# `disabled` wins over presence: a disabled device is listed as disabled whatever it last said.
_STATUS_FILTERS: Final[dict[str, str]] = {
    "online": "presence = 'online' AND NOT disabled",
    "offline": "presence = 'offline' AND NOT disabled",
    "unknown": "presence IS NULL AND NOT disabled",
    "disabled": "disabled",
}


@dataclass(frozen=True, slots=True)
class DeviceFilter:
    """Which registry rows a listing holds; None: no condition."""

    group: str | None = None
    kind: str | None = None
    status: Status | None = None
    text: str | None = None
    """Case-insensitive substring of the id or the name."""


def like_pattern(text: str) -> str:
    """An ILIKE pattern matching `text` anywhere, its own `%`, `_` and `\\` taken literally."""
    escaped = text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def where_clause(fragments: Mapping[str, str], params: Mapping[str, Any], extra: Sequence[str] = ()) -> str:
    """` WHERE …` joining the constant `fragments` whose parameter is given (not None) and `extra`; "" for none.

    Only constant SQL is joined; the values stay in `params`, passed to the driver as parameters.
    """
    conditions = [fragment for name, fragment in fragments.items() if params.get(name) is not None]
    conditions += extra
    return f" WHERE {' AND '.join(conditions)}" if conditions else ""


def device_from_row(row: Mapping[str, Any]) -> Device:
    """A `Device` from a registry row with `_DEVICE_COLUMNS` (or more)."""
    return Device(
        id=row["id"],
        kind=row["kind"],
        name=row["name"],
        group=row["group_name"],
        metadata=row["metadata"],
        created_at=row["created_at"],
        last_seen=row["last_seen"],
        disabled=row["disabled"],
        gateway=row.get("gateway_id"),
        site=row.get("site"),
    )


async def list_devices(
    pool: Pool,
    *,
    limit: int,
    after: str | None,
    group: str | None = None,
    where: DeviceFilter = DeviceFilter(),
) -> DevicePage:
    """One page of the registry matching `where` (and of `group`'s devices only, unless `group` is None:
    the group a caller is limited to), keyset-paginated on `id`: stable while devices are added, and
    correct under any filter, since the filters do not depend on the cursor."""
    params: dict[str, Any] = {
        "after": after,
        "visible_group": group,
        "group": where.group,
        "kind": where.kind,
        "q": like_pattern(where.text) if where.text is not None else None,
        "limit": limit + 1,  # one row more than asked tells whether another page exists, without a COUNT
    }
    status = [_STATUS_FILTERS[where.status]] if where.status is not None else []
    statement = (
        f"SELECT {_DEVICE_COLUMNS} FROM devices{where_clause(_FILTERS, params, status)} ORDER BY id LIMIT %(limit)s"
    )
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(statement, params)
        rows = await cur.fetchall()
    items = [device_from_row(row) for row in rows[:limit]]
    next_cursor = items[-1].id if len(rows) > limit else None
    return DevicePage(items=items, next_cursor=next_cursor)


@dataclass(frozen=True, slots=True)
class DeviceGroup:
    """The registry's devices whose `group_name` is `name`: all that a group-limited API key may see.

    Membership is read from PostgreSQL when asked; a device outside the group is treated exactly like a
    device that does not exist, so a limited caller cannot learn that it does.
    """

    pool: Pool
    name: str

    async def among(self, device_ids: Collection[str]) -> set[str]:
        """Those of `device_ids` that belong to the group."""
        if not device_ids:
            return set()
        async with self.pool.connection() as conn, conn.cursor() as cur:
            await cur.execute(
                "SELECT id FROM devices WHERE group_name = %s AND id = ANY(%s)", (self.name, list(device_ids))
            )
            return {row[0] for row in await cur.fetchall()}

    async def contains(self, device_id: str) -> bool:
        """True when `device_id` belongs to the group."""
        return bool(await self.among([device_id]))

    async def members(self, *, limit: int) -> set[str]:
        """Up to `limit` devices of the group (the first by id)."""
        async with self.pool.connection() as conn, conn.cursor() as cur:
            await cur.execute("SELECT id FROM devices WHERE group_name = %s ORDER BY id LIMIT %s", (self.name, limit))
            return {row[0] for row in await cur.fetchall()}


def _as_bytes(value: bytes | str) -> bytes:
    return value if isinstance(value, bytes) else value.encode()


def decode_state(device_id: str, fields: Mapping[Any, bytes | str]) -> DeviceState:
    """Decode a state hash (or a live update's changed fields); never raises on bad data.

    A field that does not decode is logged once with its value truncated and left out, so one corrupt
    field cannot hide a device's whole state.
    """
    raw = {_as_bytes(name): _as_bytes(value) for name, value in fields.items()}
    try:
        return state_from_fields(device_id, raw)
    except (ValueError, TypeError, msgspec.MsgspecError):
        pass
    good: dict[bytes, bytes] = {}
    for name, value in raw.items():
        try:
            state_from_fields(device_id, {name: value})
        except (ValueError, TypeError, msgspec.MsgspecError) as exc:
            log.warning(
                "device %s: skipping undecodable state field %r=%r: %s", device_id, name, value[:FIELD_LOG_BYTES], exc
            )
        else:
            good[name] = value
    return state_from_fields(device_id, good)


async def read_state(redis: Redis, device_id: str) -> DeviceState | None:
    """A device's last-known state, or None when Redis holds nothing for it."""
    fields = await redis.hgetall(state_key(device_id))
    return decode_state(device_id, fields) if fields else None


async def read_states(redis: Redis, device_ids: Iterable[str]) -> dict[str, DeviceState | None]:
    """The last-known state of several devices in one round trip."""
    ids = list(device_ids)
    async with redis.pipeline(transaction=False) as pipe:
        for device_id in ids:
            pipe.hgetall(state_key(device_id))
        replies = await pipe.execute()
    return {
        device_id: decode_state(device_id, fields) if fields else None
        for device_id, fields in zip(ids, replies, strict=True)
    }


async def known_device_ids(redis: Redis, *, limit: int) -> list[str]:
    """Up to `limit` ids of devices that have state in Redis (order unspecified)."""
    found: list[str] = []
    async for key in redis.scan_iter(match=f"{STATE_KEY_PREFIX}*", count=SCAN_BATCH_KEYS, _type="HASH"):
        found.append(_as_bytes(key).decode()[len(STATE_KEY_PREFIX) :])
        if len(found) >= limit:
            break
    return found
