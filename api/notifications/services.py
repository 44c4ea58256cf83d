"""Notification channels and the outbox in PostgreSQL."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

from psycopg.rows import dict_row

from api.notifications.schemas import Channel, Notification
from api.pool import Pool
from models.notifications import ChannelSpec, new_secret

NOTIFICATIONS_PAGE_DEFAULT: Final = 100
NOTIFICATIONS_PAGE_MAX: Final = 1000
_CHANNEL_COLUMNS = "id, name, kind, url, recipients, created_at, created_by"
_LIST = f"SELECT {_CHANNEL_COLUMNS} FROM notification_channels WHERE deleted_at IS NULL ORDER BY id"
_INSERT = (
    "INSERT INTO notification_channels (name, kind, url, secret, recipients, created_by)"
    f" VALUES (%s, %s, %s, %s, %s, %s) ON CONFLICT DO NOTHING RETURNING {_CHANNEL_COLUMNS}"
)
# A removed channel keeps its row (its notifications name it); rules stop notifying it.
_REMOVE = "UPDATE notification_channels SET deleted_at = now() WHERE id = %s AND deleted_at IS NULL"
_UNLINK = "DELETE FROM rule_notifications WHERE channel_id = %s"
_PAGE = (
    "SELECT n.id, n.channel_id, c.name AS channel_name, n.alert_id, n.alert_event_id, n.event, n.state,"
    " n.attempts, CASE WHEN n.state = 'pending' THEN n.next_attempt_at END AS next_attempt_at, n.last_error,"
    " n.created_at, n.sent_at, n.payload FROM notifications n JOIN notification_channels c ON c.id = n.channel_id"
    " WHERE (%(state)s::text IS NULL OR n.state = %(state)s) AND (%(channel)s::bigint IS NULL OR n.channel_id = %(channel)s)"
    " AND (%(alert)s::bigint IS NULL OR n.alert_id = %(alert)s) AND (%(cursor)s::bigint IS NULL OR n.id < %(cursor)s)"
    " ORDER BY n.id DESC LIMIT %(limit)s"
)
_RETRY = (
    "UPDATE notifications SET state = 'pending', attempts = 0, next_attempt_at = now(), last_error = NULL"
    " WHERE id = %s AND state = 'dead' RETURNING id"
)


class ChannelNameTakenError(ValueError):
    """A channel in use already has this name."""


def _channel(row: Mapping[str, Any], secret: str | None = None) -> Channel:
    return Channel(
        id=row["id"],
        name=row["name"],
        kind=row["kind"],
        url=row["url"],
        recipients=row["recipients"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        secret=secret,
    )


async def list_channels(pool: Pool) -> list[Channel]:
    """Every channel in use, by id, without secrets."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_LIST)
        return [_channel(row) for row in await cur.fetchall()]


async def add_channel(pool: Pool, spec: ChannelSpec, created_by: str) -> Channel:
    """Store a valid channel (`channel_problem` said so); a webhook without a secret gets one. The answer
    carries the secret: the only time it is shown. Raises `ChannelNameTakenError`."""
    secret = (spec.secret or new_secret()) if spec.kind == "webhook" else None
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_INSERT, (spec.name, spec.kind, spec.url, secret, spec.recipients, created_by))
        row = await cur.fetchone()
        if row is None:
            raise ChannelNameTakenError(f"a channel named {spec.name!r} exists")
        return _channel(row, secret)


async def remove_channel(pool: Pool, channel_id: int) -> bool:
    """Remove the channel and unlink it from every rule; False when there was none."""
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await cur.execute(_REMOVE, (channel_id,))
        if cur.rowcount == 0:
            return False
        await cur.execute(_UNLINK, (channel_id,))
        return True


async def list_notifications(
    pool: Pool, filters: Mapping[str, Any], limit: int
) -> tuple[list[Notification], int | None]:
    """A page of notifications newest first, and the cursor of the next page (None: this was the last)."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_PAGE, {**filters, "limit": limit + 1})
        rows = await cur.fetchall()
    items = [Notification(**row) for row in rows[:limit]]
    return items, (items[-1].id if len(rows) > limit else None)


async def retry_notification(pool: Pool, notification_id: int) -> bool:
    """Send a dead notification again from its first attempt; False unless it was dead."""
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.execute(_RETRY, (notification_id,))
        return cur.rowcount == 1
