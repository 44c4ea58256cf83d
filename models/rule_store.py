"""Alert rules in PostgreSQL: the statements the API (async) and `fleet rules` (sync) both run, and the
synchronous calls of the command line. Removing a rule keeps its row (its alerts name it) and clears its
open alerts in the same transaction, each with an event, so live clients and integrators hear of it."""

from __future__ import annotations

from typing import Any, Final

import psycopg
from psycopg.rows import dict_row

from models.rules import RuleSpec

RULE_COLUMNS: Final = (
    "id, name, metric, op, threshold, low, high, for_s, clear_threshold, clear_for_s, severity, device_id, kind,"
    " group_name, created_at, created_by"
)
LIST_RULES: Final = f"SELECT {RULE_COLUMNS} FROM alert_rules WHERE deleted_at IS NULL ORDER BY id"
READ_RULE: Final = f"SELECT {RULE_COLUMNS} FROM alert_rules WHERE id = %s AND deleted_at IS NULL"
INSERT_RULE: Final = (
    "INSERT INTO alert_rules (name, metric, op, threshold, low, high, for_s, clear_threshold, clear_for_s,"
    " severity, device_id, kind, group_name, created_by) VALUES (%(name)s, %(metric)s, %(op)s, %(threshold)s,"
    " %(low)s, %(high)s, %(for_s)s, %(clear_threshold)s, %(clear_for_s)s, %(severity)s, %(device_id)s,"
    f" %(kind)s, %(group)s, %(created_by)s) RETURNING {RULE_COLUMNS}"
)
REMOVE_RULE: Final = "UPDATE alert_rules SET deleted_at = now() WHERE id = %s AND deleted_at IS NULL"
CLEAR_RULE_ALERTS: Final = (
    "WITH cleared AS (UPDATE alerts SET state = 'cleared', cleared_at = now(), clear_reason = 'rule_removed',"
    " cleared_by = %s, updated_at = now() WHERE rule_id = %s AND state IN ('active', 'acknowledged') RETURNING id)"
    " INSERT INTO alert_events (alert_id, kind) SELECT id, 'cleared' FROM cleared"
)

# The alert changes after a reader's position (xid, id), in commit-safe order: only events of transactions
# below the snapshot's xmin, which can no longer commit, so a transaction that commits after a higher xid
# is read when it is done instead of being skipped. Used with `e` naming `alert_events`, ordered by
# `e.xid, e.id`, with the parameters `xid` (text) and `id`.
ALERT_EVENTS_AFTER: Final = (
    "(e.xid > %(xid)s::xid8 OR (e.xid = %(xid)s::xid8 AND e.id > %(id)s))"
    " AND e.xid < pg_snapshot_xmin(pg_current_snapshot())"
)


def insert_params(spec: RuleSpec, created_by: str) -> dict[str, Any]:
    """The parameters of `INSERT_RULE` for a valid rule."""
    return {field: getattr(spec, field) for field in spec.__struct_fields__} | {"created_by": created_by}


def list_rules(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every rule not removed, by id, as rows of `RULE_COLUMNS`."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(LIST_RULES)
        return cur.fetchall()


def add_rule(conn: psycopg.Connection[Any], spec: RuleSpec, created_by: str) -> dict[str, Any]:
    """Store a valid rule (`models.rules.rule_problem` said so); return its row."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        cur.execute(INSERT_RULE, insert_params(spec, created_by))
        row = cur.fetchone()
        assert row is not None
        return row


def remove_rule(conn: psycopg.Connection[Any], rule_id: int, removed_by: str) -> bool:
    """Remove the rule and clear its open alerts; False when there was no such rule."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(REMOVE_RULE, (rule_id,))
        if cur.rowcount == 0:
            return False
        cur.execute(CLEAR_RULE_ALERTS, (removed_by, rule_id))
        return True
