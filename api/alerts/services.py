"""Alerts in PostgreSQL: filtered listing, and the operator's side of the lifecycle (acknowledge, clear,
comment). Each change writes its `alert_events` row in the same transaction, as the engine does, so the
live stream and integrators see every change once and in commit order."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from psycopg.rows import dict_row

from api.alerts.schemas import Alert, AlertPage, Comment
from api.devices.services import where_clause
from api.pool import Pool

ALERTS_PAGE_MAX: Final = 1000
ALERTS_PAGE_DEFAULT: Final = 100

ALERT_SELECT: Final = (
    "SELECT a.id, a.rule_id, r.name AS rule_name, a.device_id, a.severity, a.state, a.message, a.value,"
    " a.started_at, a.raised_at, a.acknowledged_at, a.acknowledged_by, a.cleared_at, a.clear_reason,"
    " a.cleared_by, a.updated_at FROM alerts a JOIN alert_rules r ON r.id = a.rule_id"
)
# Conditions from constants; values go as parameters.
_FILTERS: Final = {
    "state": "a.state = %(state)s",
    "severity": "a.severity = %(severity)s",
    "device": "a.device_id = %(device)s",
    "rule": "a.rule_id = %(rule)s",
    "since": "a.started_at >= %(since)s",
    "until": "a.started_at < %(until)s",
    "group": "a.device_id IN (SELECT id FROM devices WHERE group_name = %(group)s)",
    "visible_group": "a.device_id IN (SELECT id FROM devices WHERE group_name = %(visible_group)s)",
    "cursor": "a.id < %(cursor)s",
    "id": "a.id = %(id)s",
}
_COMMENTS = "SELECT id, author, body, created_at FROM alert_comments WHERE alert_id = %s ORDER BY id"
_ACKNOWLEDGE = (
    "UPDATE alerts SET state = 'acknowledged', acknowledged_at = now(), acknowledged_by = %s, updated_at = now()"
    " WHERE id = %s AND state = 'active' RETURNING id"
)
_CLEAR = (
    "UPDATE alerts SET state = 'cleared', cleared_at = now(), clear_reason = 'operator', cleared_by = %s,"
    " updated_at = now() WHERE id = %s AND state IN ('active', 'acknowledged') RETURNING id"
)
_COMMENT = "INSERT INTO alert_comments (alert_id, author, body) VALUES (%s, %s, %s) RETURNING id, created_at"
_EVENT = "INSERT INTO alert_events (alert_id, kind) VALUES (%s, %s)"
_TOUCH = "UPDATE alerts SET updated_at = now() WHERE id = %s"


@dataclass(frozen=True, slots=True)
class NotOpen:
    """The alert exists but is not in a state the action applies to."""

    state: str


def alert_from_row(row: Mapping[str, Any], comments: list[Comment] | None = None) -> Alert:
    """An `Alert` from a row of `ALERT_SELECT`."""
    return Alert(**{k: row[k] for k in row}, comments=comments or [])


async def list_alerts(pool: Pool, *, limit: int, filters: dict[str, Any]) -> AlertPage:
    """Alerts matching `filters` (None: any), newest first."""
    params = filters | {"limit": limit + 1}
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"{ALERT_SELECT}{where_clause(_FILTERS, params)} ORDER BY a.id DESC LIMIT %(limit)s", params)
        rows = await cur.fetchall()
    items = [alert_from_row(row) for row in rows[:limit]]
    return AlertPage(items=items, next_cursor=items[-1].id if len(rows) > limit else None)


async def read_alert(pool: Pool, alert_id: int, visible_group: str | None) -> Alert | None:
    """The alert with its comments, or None (also when outside the caller's group)."""
    params = {"id": alert_id, "visible_group": visible_group}
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(f"{ALERT_SELECT}{where_clause(_FILTERS, params)}", params)
        row = await cur.fetchone()
        if row is None:
            return None
        await cur.execute(_COMMENTS, (alert_id,))
        comments = [Comment(**c) for c in await cur.fetchall()]
    return alert_from_row(row, comments)


async def act_on_alert(pool: Pool, alert_id: int, action: str, who: str, comment: str | None) -> bool | NotOpen:
    """Acknowledge or clear (`action`) the alert, with an optional comment: True when done, False when
    there is no such alert, `NotOpen` when its state does not allow it."""
    statement = _ACKNOWLEDGE if action == "acknowledged" else _CLEAR
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await cur.execute(statement, (who, alert_id))
        if await cur.fetchone() is None:
            await cur.execute("SELECT state FROM alerts WHERE id = %s", (alert_id,))
            row = await cur.fetchone()
            return False if row is None else NotOpen(row[0])
        if comment is not None:
            await cur.execute(_COMMENT, (alert_id, who, comment))
        await cur.execute(_EVENT, (alert_id, action))
        return True


async def comment_on_alert(pool: Pool, alert_id: int, who: str, body: str) -> Comment | None:
    """Add a comment (any state); None when there is no such alert."""
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await cur.execute(_TOUCH, (alert_id,))
        if cur.rowcount == 0:
            return None
        await cur.execute(_COMMENT, (alert_id, who, body))
        row = await cur.fetchone()
        assert row is not None
        await cur.execute(_EVENT, (alert_id, "commented"))
        comment_id, created_at = row
    return Comment(id=comment_id, author=who, body=body, created_at=created_at)
