"""Alert rules in PostgreSQL: the statements the API (async) and `fleet rules` (sync) both run, and the
synchronous calls of the command line. Removing a rule keeps its row (its alerts name it) and clears its
open alerts in the same transaction, each with an event, so live clients and integrators hear of it."""

from __future__ import annotations

from typing import Any, Final

import psycopg
from psycopg.rows import dict_row

from models.default_rules import DEFAULT_RULES
from models.rules import RuleSpec

RULE_COLUMNS: Final = (
    "id, name, metric, op, threshold, low, high, for_s, clear_threshold, clear_for_s, severity, device_id, kind,"
    " group_name, fence_id, created_at, created_by, window_s, while_parked"
)
# The channels a rule notifies, as a JSON list of {"channel", "events"} (models.rules.NotifyTarget).
_NOTIFY_COLUMN: Final = (
    "COALESCE((SELECT json_agg(json_build_object('channel', n.channel_id, 'events', n.events)"
    " ORDER BY n.channel_id) FROM rule_notifications n WHERE n.rule_id = alert_rules.id), '[]'::json) AS notify"
)
# A maintenance schedule's own rule is managed through the schedule (api/maintenance/), not listed here.
LIST_RULES: Final = (
    f"SELECT {RULE_COLUMNS}, {_NOTIFY_COLUMN} FROM alert_rules WHERE deleted_at IS NULL AND op <> 'maintenance'"
    " ORDER BY id"
)
READ_RULE: Final = (
    f"SELECT {RULE_COLUMNS}, {_NOTIFY_COLUMN} FROM alert_rules"
    " WHERE id = %s AND deleted_at IS NULL AND op <> 'maintenance'"
)
INSERT_RULE: Final = (
    "INSERT INTO alert_rules (name, metric, op, threshold, low, high, for_s, clear_threshold, clear_for_s,"
    " severity, device_id, kind, group_name, fence_id, created_by, window_s, while_parked) VALUES (%(name)s,"
    " %(metric)s, %(op)s, %(threshold)s, %(low)s, %(high)s, %(for_s)s, %(clear_threshold)s, %(clear_for_s)s,"
    " %(severity)s, %(device_id)s, %(kind)s, %(group)s, %(fence_id)s, %(created_by)s, %(window_s)s,"
    " %(while_parked)s) RETURNING id"
)
# A fence in use with this id, or no row (a geofence rule cannot name a removed or unknown fence). The lock
# makes a removal under way wait for this rule, or this rule for the removal (api/geofences/services.py).
FENCE_IN_USE: Final = "SELECT 1 FROM geofences WHERE id = %s AND deleted_at IS NULL FOR SHARE"
# The channel ids among these that name no channel in use (a rule cannot notify those).
UNKNOWN_CHANNELS: Final = (
    "SELECT x FROM unnest(%s::bigint[]) AS x WHERE NOT EXISTS"
    " (SELECT 1 FROM notification_channels c WHERE c.id = x AND c.deleted_at IS NULL) ORDER BY x"
)
INSERT_RULE_NOTIFY: Final = "INSERT INTO rule_notifications (rule_id, channel_id, events) VALUES (%s, %s, %s)"
REMOVE_RULE: Final = (
    "UPDATE alert_rules SET deleted_at = now() WHERE id = %s AND deleted_at IS NULL AND op <> 'maintenance'"
)
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


class UnknownChannelError(ValueError):
    """A rule names notification channels that do not exist (or were removed)."""

    def __init__(self, ids: list[int]) -> None:
        super().__init__(f"no notification channel {', '.join(map(str, ids))} (GET /api/v1/notification-channels)")


class UnknownFenceError(ValueError):
    """A geofence rule names a fence that does not exist (or was removed)."""

    def __init__(self, fence_id: int) -> None:
        super().__init__(f"no geofence {fence_id} (GET /api/v1/geofences)")


def insert_params(spec: RuleSpec, created_by: str) -> dict[str, Any]:
    """The parameters of `INSERT_RULE` for a valid rule."""
    fields = {field: getattr(spec, field) for field in spec.__struct_fields__ if field != "notify"}
    return fields | {"created_by": created_by}


def notify_params(rule_id: int, spec: RuleSpec) -> list[tuple[int, int, list[str]]]:
    """The rows of `INSERT_RULE_NOTIFY` for a rule's `notify` list."""
    return [(rule_id, target.channel, list(target.events)) for target in spec.notify]


def list_rules(conn: psycopg.Connection[Any]) -> list[dict[str, Any]]:
    """Every rule not removed, by id, as rows of `RULE_COLUMNS`."""
    with conn.cursor(row_factory=dict_row) as cur:
        cur.execute(LIST_RULES)
        return cur.fetchall()


def add_rule(conn: psycopg.Connection[Any], spec: RuleSpec, created_by: str) -> dict[str, Any]:
    """Store a valid rule (`models.rules.rule_problem` said so); return its row. Raises
    `UnknownChannelError` or `UnknownFenceError` for a channel or a fence that does not exist."""
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        if spec.notify:
            cur.execute(UNKNOWN_CHANNELS, ([t.channel for t in spec.notify],))
            unknown = [row["x"] for row in cur.fetchall()]
            if unknown:
                raise UnknownChannelError(unknown)
        if spec.fence_id is not None:
            cur.execute(FENCE_IN_USE, (spec.fence_id,))
            if cur.fetchone() is None:
                raise UnknownFenceError(spec.fence_id)
        cur.execute(INSERT_RULE, insert_params(spec, created_by))
        inserted = cur.fetchone()
        assert inserted is not None
        cur.executemany(INSERT_RULE_NOTIFY, notify_params(inserted["id"], spec))
        cur.execute(READ_RULE, (inserted["id"],))
        row = cur.fetchone()
        assert row is not None
        return row


DEFAULTS_LOCK: Final = (0x52756C, 0x6466)  # ("Rul", "df"): one adder of the default rules at a time
LIVE_RULE_NAMES: Final = "SELECT name FROM alert_rules WHERE deleted_at IS NULL"
ANY_RULE_EVER: Final = "SELECT EXISTS (SELECT 1 FROM alert_rules)"


def add_default_rules(
    conn: psycopg.Connection[Any], created_by: str, *, first_start: bool = False
) -> list[dict[str, Any]]:
    """Add the default rules (`models.default_rules`) whose name no rule in use has; return their rows.

    With `first_start`, only into a rule table that is empty, removed rules included: a fleet whose
    operators removed the defaults does not get them back at its next start.
    """
    added: list[dict[str, Any]] = []
    with conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        # Two of these at once would both see a name free and add it twice (names are not unique).
        cur.execute("SELECT pg_advisory_xact_lock(%s, %s)", DEFAULTS_LOCK)
        if first_start:
            cur.execute(ANY_RULE_EVER)
            row = cur.fetchone()
            if row is not None and row["exists"]:
                return []
        cur.execute(LIVE_RULE_NAMES)
        taken = {row["name"] for row in cur.fetchall()}
        for spec in DEFAULT_RULES:
            if spec.name in taken:
                continue
            cur.execute(INSERT_RULE, insert_params(spec, created_by))
            inserted = cur.fetchone()
            assert inserted is not None
            cur.execute(READ_RULE, (inserted["id"],))
            rule = cur.fetchone()
            assert rule is not None
            added.append(rule)
    return added


def remove_rule(conn: psycopg.Connection[Any], rule_id: int, removed_by: str) -> bool:
    """Remove the rule and clear its open alerts; False when there was no such rule."""
    with conn.transaction(), conn.cursor() as cur:
        cur.execute(REMOVE_RULE, (rule_id,))
        if cur.rowcount == 0:
            return False
        cur.execute(CLEAR_RULE_ALERTS, (removed_by, rule_id))
        return True


# The alert changes after a reader's position, each with its alert as it is now: the rows of an
# `AlertNotice` (plus `event_xid`, the reader's next position with `event_id`), oldest first. Read by the
# engine's MQTT publisher and its notification queue, each with a cursor of its own.
ALERT_NOTICES_AFTER: Final = (
    "SELECT e.id AS event_id, e.xid::text AS event_xid, e.kind AS event, a.id AS alert_id, a.rule_id,"
    " r.name AS rule_name, a.device_id, a.severity, a.state, a.message, a.value, a.started_at, a.raised_at,"
    " a.acknowledged_at, a.acknowledged_by, a.cleared_at, a.clear_reason, a.cleared_by"
    " FROM alert_events e JOIN alerts a ON a.id = e.alert_id JOIN alert_rules r ON r.id = a.rule_id"
    f" WHERE {ALERT_EVENTS_AFTER} ORDER BY e.xid, e.id LIMIT %(limit)s"
)
