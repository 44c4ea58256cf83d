"""Operator accounts and integrator API keys in PostgreSQL (tables `users` and `api_keys`).

Every function takes a connection, so the API (a pooled connection) and the `fleet users` command (a
connection of its own) share them. Slow password hashing runs in a worker thread.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, TypeAlias

import msgspec
from psycopg import AsyncConnection
from psycopg.rows import dict_row

from api.accounts.keys import generate_key, key_digest
from api.accounts.passwords import hash_password, password_problem, verify_password
from api.accounts.roles import Role
from api.accounts.schemas import GROUP_MAX_CHARS, NAME_PATTERN, ApiKey, CreatedApiKey, User

Connection: TypeAlias = AsyncConnection[tuple[Any, ...]]

_NAME: Final = re.compile(NAME_PATTERN)
_USER_COLUMNS: Final = "username, role, created_at, disabled"
_KEY_COLUMNS: Final = "id, name, key_prefix, group_name, created_at, revoked_at"


@dataclass(frozen=True, slots=True)
class Refused:
    """A request the data refuses (a taken name, a weak password), and why."""

    reason: str
    conflict: bool = False
    """True when it clashes with what exists (the name is taken) rather than being invalid in itself."""


def name_problem(name: str) -> str | None:
    """Why `name` cannot name a user or key, or None when it can."""
    if _NAME.fullmatch(name) is None:
        return f"{name!r} is not a valid name: 1 to 64 of A-Z a-z 0-9 _ . @ -, starting with a letter or digit"
    return None


def _user(row: Mapping[str, Any]) -> User:
    return User(
        username=row["username"], role=Role(row["role"]), created_at=row["created_at"], disabled=row["disabled"]
    )


def _api_key(row: Mapping[str, Any]) -> ApiKey:
    return ApiKey(
        id=row["id"],
        name=row["name"],
        prefix=row["key_prefix"],
        group=row["group_name"],
        created_at=row["created_at"],
        revoked_at=row["revoked_at"],
    )


async def create_user(conn: Connection, username: str, role: Role, password: str) -> User | Refused:
    """Add an operator account; refused when the name is taken or invalid, or the password too weak."""
    problem = name_problem(username) or password_problem(password)
    if problem is not None:
        return Refused(problem)
    password_hash = await asyncio.to_thread(hash_password, password)
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            "INSERT INTO users (username, role, password_hash) VALUES (%s, %s, %s)"
            f" ON CONFLICT (username) DO NOTHING RETURNING {_USER_COLUMNS}",
            (username, role.value, password_hash),
        )
        row = await cur.fetchone()
    if row is None:
        return Refused(f"user {username!r} exists", conflict=True)
    return _user(row)


async def list_users(conn: Connection) -> list[User]:
    """Every operator account, by name."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_USER_COLUMNS} FROM users ORDER BY username")
        return [_user(row) for row in await cur.fetchall()]


async def find_user(conn: Connection, username: str) -> User | None:
    """The account `username` as it is now (disabled ones included), or None when there is none."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_USER_COLUMNS} FROM users WHERE username = %s", (username,))
        row = await cur.fetchone()
    return _user(row) if row is not None else None


async def authenticate(conn: Connection, username: str, password: str) -> User | None:
    """The account `username` when `password` is its password and it is not disabled, else None.

    An unknown name costs the same hash check as a wrong password, so timing does not tell which names exist.
    """
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_USER_COLUMNS}, password_hash FROM users WHERE username = %s", (username,))
        row = await cur.fetchone()
    matched = await asyncio.to_thread(verify_password, row["password_hash"] if row else None, password)
    if row is None or not matched or row["disabled"]:
        return None
    return _user(row)


async def create_api_key(conn: Connection, name: str, group: str | None) -> CreatedApiKey | Refused:
    """A new read-only key, limited to the devices of `group` unless it is None; the key is in the result only."""
    problem = name_problem(name)
    if problem is None and group is not None and not 0 < len(group) <= GROUP_MAX_CHARS:
        problem = f"a group name has 1 to {GROUP_MAX_CHARS} characters"
    if problem is not None:
        return Refused(problem)
    generated = generate_key()
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"INSERT INTO api_keys (name, key_sha256, key_prefix, group_name) VALUES (%s, %s, %s, %s) RETURNING {_KEY_COLUMNS}",
            (name, generated.digest, generated.prefix, group),
        )
        row = await cur.fetchone()
    assert row is not None  # INSERT … RETURNING always returns the row
    return CreatedApiKey(**msgspec.structs.asdict(_api_key(row)), key=generated.key)


async def list_api_keys(conn: Connection) -> list[ApiKey]:
    """Every key, revoked ones included, oldest first."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"SELECT {_KEY_COLUMNS} FROM api_keys ORDER BY id")
        return [_api_key(row) for row in await cur.fetchall()]


async def revoke_api_key(conn: Connection, key_id: int) -> bool:
    """Revoke a key (it stops working at once; revoking twice is harmless); False when no such key exists."""
    async with conn.cursor() as cur:
        await cur.execute(
            "UPDATE api_keys SET revoked_at = coalesce(revoked_at, now()) WHERE id = %s RETURNING id", (key_id,)
        )
        return await cur.fetchone() is not None


async def find_api_key(conn: Connection, key: str) -> ApiKey | None:
    """The unrevoked key whose digest matches `key`, or None."""
    async with conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(
            f"SELECT {_KEY_COLUMNS} FROM api_keys WHERE key_sha256 = %s AND revoked_at IS NULL", (key_digest(key),)
        )
        row = await cur.fetchone()
    return _api_key(row) if row is not None else None
