"""Time partitions on plain PostgreSQL: daily partitions created ahead of time, dropped after retention.

TimescaleDB does all of this itself (chunks and a retention policy); there this module does nothing.
The time-bucket rollups are partitioned the same way, by the start of each bucket.
Rows that landed in a default partition (a timestamp outside every partition) are moved into the new
partition when it is created, so attaching never fails and nothing is lost.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from typing import Any, Final

import psycopg
from psycopg import sql

from models.migrate import uses_timescale

log = logging.getLogger(__name__)

# The rollups (migration 0007) are partitioned and retained exactly like the rows they summarise; their
# `ts` is the bucket's start, so a bucket always lies in the day of its samples.
PARTITIONED_TABLES: Final = ("telemetry", "events", "telemetry_1m", "telemetry_1h")
# Presence changes (migration 0017) are few: one table, its expired rows deleted, on TimescaleDB too.
PRESENCE_HISTORY: Final = "presence_history"


@dataclass(slots=True)
class MaintenanceReport:
    """What one maintenance pass changed."""

    created: list[str] = field(default_factory=list)
    dropped: list[str] = field(default_factory=list)


def partition_name(table: str, day: date) -> str:
    """The name of `table`'s partition for one UTC day."""
    return f"{table}_p{day:%Y%m%d}"


def _day_start(day: date) -> datetime:
    return datetime.combine(day, time(), tzinfo=UTC)


def existing_partitions(conn: psycopg.Connection[tuple[Any, ...]], table: str) -> dict[str, tuple[datetime, datetime]]:
    """The daily partitions of `table` with their [from, to) bounds (the default partition excluded)."""
    rows = conn.execute(
        "SELECT c.relname FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid "
        "JOIN pg_class p ON p.oid = i.inhparent WHERE p.relname = %s",
        (table,),
    ).fetchall()
    found: dict[str, tuple[datetime, datetime]] = {}
    prefix = f"{table}_p"
    for (name,) in rows:
        if not name.startswith(prefix):
            continue
        day = datetime.strptime(name[len(prefix) :], "%Y%m%d").replace(tzinfo=UTC).date()
        found[name] = (_day_start(day), _day_start(day + timedelta(days=1)))
    return found


def maintain(
    conn: psycopg.Connection[tuple[Any, ...]], *, now: datetime, ahead_days: int = 7, retention_days: int = 30
) -> MaintenanceReport:
    """Create missing daily partitions from retention ago to `ahead_days` ahead; drop expired ones."""
    report = MaintenanceReport()
    today = now.astimezone(UTC).date()
    oldest = today - timedelta(days=retention_days)
    _expire_presence_history(conn, _day_start(oldest))
    _expire_engine_outputs(conn, _day_start(oldest))
    if uses_timescale(conn):
        return report
    wanted = [oldest + timedelta(days=n) for n in range((today - oldest).days + ahead_days + 1)]
    for table in PARTITIONED_TABLES:
        if not _exists(conn, table):
            # A schema older than the code (the rollups of step 0007 not migrated yet): nothing to keep.
            continue
        existing = existing_partitions(conn, table)
        for day in wanted:
            name = partition_name(table, day)
            if name not in existing:
                _create(conn, table, name, _day_start(day), _day_start(day + timedelta(days=1)))
                report.created.append(name)
        horizon = _day_start(oldest)
        for name, (_, upper) in existing.items():
            if upper <= horizon:
                with conn.transaction():
                    conn.execute(sql.SQL("DROP TABLE {}").format(sql.Identifier(name)))
                report.dropped.append(name)
        with conn.transaction():
            deleted = conn.execute(
                sql.SQL("DELETE FROM {} WHERE ts < %s").format(sql.Identifier(f"{table}_default")), (horizon,)
            ).rowcount
        if deleted:
            log.info("retention removed %d expired rows from %s_default", deleted, table)
    if report.created or report.dropped:
        log.info("partitions created %s, dropped %s", report.created, report.dropped)
    return report


# What the rules engine derived, kept as long as the history it was derived from: closed alerts (with their
# changes, comments and notifications), geofence events, and trips, stops and idling that ended before the
# horizon. Open alerts stay whatever their age: an operator has yet to act on them. Ended commands go too.
_CLOSED_ALERTS = "SELECT id FROM alerts WHERE state IN ('cleared', 'retracted') AND updated_at < %(horizon)s"
_ENGINE_EXPIRY: Final = (
    ("notifications", f"DELETE FROM notifications WHERE alert_id IN ({_CLOSED_ALERTS})"),
    ("alert_comments", f"DELETE FROM alert_comments WHERE alert_id IN ({_CLOSED_ALERTS})"),
    ("alert_events", f"DELETE FROM alert_events WHERE alert_id IN ({_CLOSED_ALERTS})"),
    ("alerts", "DELETE FROM alerts WHERE state IN ('cleared', 'retracted') AND updated_at < %(horizon)s"),
    ("geofence_events", "DELETE FROM geofence_events WHERE ts < %(horizon)s"),
    ("trips", "DELETE FROM trips WHERE ended_at < %(horizon)s AND complete"),
    ("stops", "DELETE FROM stops WHERE ended_at < %(horizon)s AND complete"),
    ("idle_periods", "DELETE FROM idle_periods WHERE ended_at < %(horizon)s"),
    # Commands that ended before the horizon, with their transitions (ON DELETE CASCADE).
    (
        "commands",
        "DELETE FROM commands WHERE state IN ('succeeded', 'failed', 'expired', 'cancelled')"
        " AND finished_at < %(horizon)s",
    ),
)


def _expire_engine_outputs(conn: psycopg.Connection[tuple[Any, ...]], horizon: datetime) -> None:
    """Forget what the engine derived from history older than `horizon` (one transaction: an alert and
    its changes go together)."""
    removed: dict[str, int] = {}
    with conn.transaction():
        for table, statement in _ENGINE_EXPIRY:
            if _exists(conn, table):
                count = conn.execute(statement, {"horizon": horizon}).rowcount
                if count:
                    removed[table] = count
    if removed:
        log.info("retention removed what the engine derived before %s: %s", horizon.isoformat(), removed)


def _expire_presence_history(conn: psycopg.Connection[tuple[Any, ...]], horizon: datetime) -> None:
    """Forget presence changes older than `horizon`, except each device's last one before it: the presence
    at the horizon is still known, so a timeline that starts there is not left blank."""
    if not _exists(conn, PRESENCE_HISTORY):
        return
    with conn.transaction():
        deleted = conn.execute(
            "DELETE FROM presence_history h WHERE h.at < %(horizon)s AND EXISTS ("
            " SELECT 1 FROM presence_history later"
            " WHERE later.device_id = h.device_id AND later.at > h.at AND later.at <= %(horizon)s)",
            {"horizon": horizon},
        ).rowcount
    if deleted:
        log.info("retention removed %d expired presence changes", deleted)


def _exists(conn: psycopg.Connection[tuple[Any, ...]], table: str) -> bool:
    row = conn.execute("SELECT to_regclass(%s)", (table,)).fetchone()
    return row is not None and row[0] is not None


def _create(conn: psycopg.Connection[tuple[Any, ...]], table: str, name: str, lower: datetime, upper: datetime) -> None:
    ident = sql.Identifier(name)
    with conn.transaction():
        conn.execute(
            sql.SQL("CREATE TABLE {} (LIKE {} INCLUDING DEFAULTS INCLUDING CONSTRAINTS)").format(
                ident, sql.Identifier(table)
            )
        )
        conn.execute(
            sql.SQL(
                "WITH moved AS (DELETE FROM {} WHERE ts >= %s AND ts < %s RETURNING *) INSERT INTO {} SELECT * FROM moved"
            ).format(sql.Identifier(f"{table}_default"), ident),
            (lower, upper),
        )
        conn.execute(
            # DDL takes no bind parameters: the bounds go in as quoted literals.
            sql.SQL("ALTER TABLE {} ATTACH PARTITION {} FOR VALUES FROM ({}) TO ({})").format(
                sql.Identifier(table), ident, sql.Literal(lower), sql.Literal(upper)
            )
        )
