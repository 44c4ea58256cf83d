"""Commands in PostgreSQL: created once per idempotency key, read with their transitions, listed per device,
cancelled while queued. Every change writes its `command_events` row in the same transaction, so live
connections see each transition once and in commit order (`api.live.commands`)."""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import msgspec
from psycopg import AsyncCursor
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from api.commands.schemas import Command, CommandPage, CommandPost, Transition
from api.pool import Pool
from models.commands import TRANSITION_KEY

COMMANDS_PAGE_MAX: Final = 1000
COMMANDS_PAGE_DEFAULT: Final = 100

COMMAND_COLUMNS: Final = (
    "c.id::text AS id, c.device_id, c.name, c.args, c.dangerous, c.state, c.created_at, c.created_by, c.expires_at,"
    " c.sent_at, c.attempts, c.received_at, c.finished_at, c.result, c.updated_at"
)
_SELECT = f"SELECT {COMMAND_COLUMNS} FROM commands c"
_DEVICE = "SELECT kind, disabled, group_name, presence, presence_source, presence_since FROM devices WHERE id = %s"
_BY_KEY = (
    f"SELECT {COMMAND_COLUMNS}, c.request_sha256 FROM commands c"
    " WHERE c.device_id = %s AND c.created_by = %s AND c.idempotency_key = %s"
)
_INSERT = (
    "INSERT INTO commands (id, device_id, name, args, dangerous, created_by, expires_at, idempotency_key,"
    " request_sha256) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT (device_id, created_by, idempotency_key) DO NOTHING RETURNING id"
)
_EVENT = f"INSERT INTO command_events (command_id, state, detail) VALUES (%s, %s, %s) ON CONFLICT {TRANSITION_KEY} DO NOTHING"
# Reports of one batch share their transaction's time: the device's own time orders them.
_TRANSITIONS = (
    "SELECT state, at, device_ts, detail FROM command_events WHERE command_id = %s"
    " ORDER BY at, device_ts NULLS FIRST, id"
)
_CANCEL = (
    "UPDATE commands SET state = 'cancelled', finished_at = now(), updated_at = now()"
    " WHERE id = %s AND state = 'queued' RETURNING id"
)
_json = msgspec.json.Encoder()


@dataclass(frozen=True, slots=True)
class DeviceFacts:
    """What a command needs to know of its device."""

    kind: str
    disabled: bool
    group: str | None
    presence: str | None
    presence_source: str | None
    presence_since: datetime | None

    @property
    def online(self) -> bool:
        """True when the database holds the device as online right now."""
        return self.presence == "online" and not self.disabled


@dataclass(frozen=True, slots=True)
class Replayed:
    """The idempotency key named an existing command for the same request."""

    command: Command


@dataclass(frozen=True, slots=True)
class KeyReused:
    """The idempotency key named an existing command made by a different request."""

    command_id: str


@dataclass(frozen=True, slots=True)
class NewCommand:
    """What to store: checked already (`models.commands.check_command`, `resolve_expiry`)."""

    device_id: str
    name: str
    args: dict[str, Any]
    dangerous: bool
    expires_at: datetime
    created_by: str
    idempotency_key: str | None
    request_sha256: bytes | None


def request_digest(device_id: str, post: CommandPost) -> bytes:
    """A digest of what was asked, to tell a replay of an idempotency key from a new request reusing it.

    `expires_in_s` is relative, so a replay seconds later has the same digest; the request as sent counts,
    not the expiry it resolved to.
    """
    return hashlib.sha256(device_id.encode() + b"\0" + _json.encode(post)).digest()


def command_from_row(row: Mapping[str, Any], transitions: list[Transition] | None = None) -> Command:
    """A `Command` from a row with `COMMAND_COLUMNS`."""
    fields = {k: row[k] for k in Command.__struct_fields__ if k in row and k != "transitions"}
    return Command(**fields, transitions=transitions or [])


async def device_facts(pool: Pool, device_id: str) -> DeviceFacts | None:
    """The device's kind, state and presence, or None when it is not registered."""
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.execute(_DEVICE, (device_id,))
        row = await cur.fetchone()
    return None if row is None else DeviceFacts(*row)


async def replay(pool: Pool, device_id: str, who: str, key: str, digest: bytes) -> Replayed | KeyReused | None:
    """The command an earlier request with this idempotency key made, if any."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_BY_KEY, (device_id, who, key))
        row = await cur.fetchone()
        if row is None:
            return None
        if bytes(row["request_sha256"] or b"") != digest:
            return KeyReused(row["id"])
        await cur.execute(_TRANSITIONS, (row["id"],))
        transitions = [Transition(**t) for t in await cur.fetchall()]
    return Replayed(command_from_row(row, transitions))


async def insert_command(pool: Pool, new: NewCommand) -> str | None:
    """Store the command as queued, with its first transition; its id, or None when a concurrent request
    with the same idempotency key stored one first."""
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        return await insert_command_in(cur, new)


async def insert_command_in(cur: AsyncCursor[Any], new: NewCommand) -> str | None:
    """`insert_command` within the caller's transaction."""
    command_id = str(uuid.uuid4())
    await cur.execute(
        _INSERT,
        (
            command_id,
            new.device_id,
            new.name,
            Jsonb(new.args),
            new.dangerous,
            new.created_by,
            new.expires_at,
            new.idempotency_key,
            new.request_sha256,
        ),
    )
    if await cur.fetchone() is None:
        return None
    await cur.execute(_EVENT, (command_id, "queued", None))
    return command_id


async def read_command(pool: Pool, command_id: str, visible_group: str | None) -> Command | None:
    """The command with its transitions, or None (also when its device is outside the caller's group)."""
    where = " WHERE c.id = %(id)s::uuid"
    if visible_group is not None:
        where += " AND c.device_id IN (SELECT id FROM devices WHERE group_name = %(group)s)"
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_SELECT + where, {"id": command_id, "group": visible_group})
        row = await cur.fetchone()
        if row is None:
            return None
        await cur.execute(_TRANSITIONS, (command_id,))
        transitions = [Transition(**t) for t in await cur.fetchall()]
    return command_from_row(row, transitions)


async def list_commands(
    pool: Pool, device_id: str, *, state: str | None, limit: int, after: tuple[datetime, str] | None
) -> CommandPage:
    """The device's commands, newest first, from after the keyset position `after`."""
    clauses = ["c.device_id = %(device)s"]
    params: dict[str, Any] = {"device": device_id, "limit": limit + 1}
    if state is not None:
        clauses.append("c.state = %(state)s")
        params["state"] = state
    if after is not None:
        clauses.append("(c.created_at, c.id) < (%(at)s, %(id)s::uuid)")
        params["at"], params["id"] = after
    sql = f"{_SELECT} WHERE {' AND '.join(clauses)} ORDER BY c.created_at DESC, c.id DESC LIMIT %(limit)s"
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(sql, params)
        rows = await cur.fetchall()
    items = [command_from_row(row) for row in rows[:limit]]
    last = items[-1] if len(rows) > limit else None
    return CommandPage(items=items, next_cursor=None if last is None else encode_cursor(last.created_at, last.id))


def encode_cursor(created_at: datetime, command_id: str) -> str:
    """A keyset position as one opaque-looking string."""
    return f"{created_at.isoformat()}~{command_id}"


def decode_cursor(cursor: str) -> tuple[datetime, str] | None:
    """The keyset position of `cursor`, or None when it is not one this API made."""
    at, _, command_id = cursor.partition("~")
    try:
        parsed = datetime.fromisoformat(at)
        uuid.UUID(command_id)
    except ValueError:
        return None
    return (parsed, command_id) if parsed.tzinfo is not None else None


async def cancel_command(pool: Pool, command_id: str, who: str) -> bool | str:
    """Cancel a queued command: True when done, False when there is none, else the state it is in.

    A command being handed to the broker right now holds its row lock: this waits for it, then finds it
    sent, which is the truth.
    """
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await cur.execute(_CANCEL, (command_id,))
        if await cur.fetchone() is not None:
            await cur.execute(_EVENT, (command_id, "cancelled", Jsonb({"by": who})))
            return True
        await cur.execute("SELECT state FROM commands WHERE id = %s", (command_id,))
        row = await cur.fetchone()
    return False if row is None else str(row[0])
