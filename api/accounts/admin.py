"""Account administration without a running API: what `fleet users` does, on a connection of its own.

The first admin has to come from somewhere: `fleet users add NAME --role admin` on the database.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import TypeVar

import psycopg

from api.accounts.roles import Role
from api.accounts.schemas import ApiKey, CreatedApiKey, User
from api.accounts.services import (
    Connection,
    Refused,
    create_api_key,
    create_user,
    list_api_keys,
    revoke_api_key,
)

T = TypeVar("T")


async def _on_database(database_url: str, work: Callable[[Connection], Awaitable[T]]) -> T:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        return await work(conn)


def add_user(database_url: str, username: str, role: Role, password: str) -> User | Refused:
    """Add an operator account (raises `psycopg.Error` when the database cannot be used)."""
    return asyncio.run(_on_database(database_url, lambda conn: create_user(conn, username, role, password)))


def add_api_key(database_url: str, name: str, group: str | None) -> CreatedApiKey | Refused:
    """Make a read-only integrator key; the key is in the result only (raises `psycopg.Error` like `add_user`)."""
    return asyncio.run(_on_database(database_url, lambda conn: create_api_key(conn, name, group)))


def api_keys(database_url: str) -> list[ApiKey]:
    """Every API key, revoked ones included (their prefixes only; the keys themselves are not stored)."""
    return asyncio.run(_on_database(database_url, list_api_keys))


def revoke_key(database_url: str, key_id: int) -> bool:
    """Revoke key `key_id` (it stops working at once); False when there is no such key."""
    return asyncio.run(_on_database(database_url, lambda conn: revoke_api_key(conn, key_id)))
