"""Alert rules in PostgreSQL, with the statements `fleet rules` runs too (models/rule_store.py)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from psycopg.rows import dict_row

from api.pool import Pool
from api.rules.schemas import Rule
from models.rule_store import (
    CLEAR_RULE_ALERTS,
    FENCE_IN_USE,
    INSERT_RULE,
    INSERT_RULE_NOTIFY,
    LIST_RULES,
    READ_RULE,
    REMOVE_RULE,
    UNKNOWN_CHANNELS,
    UnknownChannelError,
    UnknownFenceError,
    insert_params,
    notify_params,
)
from models.rules import NotifyTarget, RuleSpec


def rule_from_row(row: Mapping[str, Any]) -> Rule:
    """A `Rule` from a row of `RULE_COLUMNS`."""
    return Rule(
        id=row["id"],
        name=row["name"],
        metric=row["metric"],
        op=row["op"],
        threshold=row["threshold"],
        low=row["low"],
        high=row["high"],
        for_s=row["for_s"],
        clear_threshold=row["clear_threshold"],
        clear_for_s=row["clear_for_s"],
        severity=row["severity"],
        device_id=row["device_id"],
        kind=row["kind"],
        group=row["group_name"],
        fence_id=row["fence_id"],
        created_at=row["created_at"],
        created_by=row["created_by"],
        notify=[NotifyTarget(channel=n["channel"], events=n["events"]) for n in row["notify"]],
        window_s=row["window_s"],
        while_parked=row["while_parked"],
    )


async def list_rules(pool: Pool) -> list[Rule]:
    """Every rule not removed, by id."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(LIST_RULES)
        return [rule_from_row(row) for row in await cur.fetchall()]


async def read_rule(pool: Pool, rule_id: int) -> Rule | None:
    """The rule, or None when there is none or it was removed."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(READ_RULE, (rule_id,))
        row = await cur.fetchone()
        return rule_from_row(row) if row is not None else None


async def add_rule(pool: Pool, spec: RuleSpec, created_by: str) -> Rule:
    """Store a valid rule (`models.rules.rule_problem` said so); the engine picks it up on its next cycle.
    Raises `UnknownChannelError` when `notify` names a channel that does not exist, `UnknownFenceError` when
    `fence_id` names no fence in use."""
    async with pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        if spec.notify:
            await cur.execute(UNKNOWN_CHANNELS, ([t.channel for t in spec.notify],))
            unknown = [row["x"] for row in await cur.fetchall()]
            if unknown:
                raise UnknownChannelError(unknown)
        if spec.fence_id is not None:
            await cur.execute(FENCE_IN_USE, (spec.fence_id,))
            if await cur.fetchone() is None:
                raise UnknownFenceError(spec.fence_id)
        await cur.execute(INSERT_RULE, insert_params(spec, created_by))
        inserted = await cur.fetchone()
        assert inserted is not None
        await cur.executemany(INSERT_RULE_NOTIFY, notify_params(inserted["id"], spec))
        await cur.execute(READ_RULE, (inserted["id"],))
        row = await cur.fetchone()
        assert row is not None
        return rule_from_row(row)


async def remove_rule(pool: Pool, rule_id: int, removed_by: str) -> bool:
    """Remove the rule and clear its open alerts; False when there was no such rule."""
    async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
        await cur.execute(REMOVE_RULE, (rule_id,))
        if cur.rowcount == 0:
            return False
        await cur.execute(CLEAR_RULE_ALERTS, (removed_by, rule_id))
        return True
