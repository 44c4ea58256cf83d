"""Apply the ordered schema history to PostgreSQL, with or without TimescaleDB.

Migrations are `models/migrations/NNNN_name.sql`. Where a `NNNN_name.timescale.sql` variant exists and
the database follows the TimescaleDB variant, that file is applied instead; the history (version numbers)
is the same on both. After the history, `timescale_features.sql` runs idempotently on TimescaleDB
databases. An advisory lock makes concurrent runs (`fleet db migrate`, `fleet up`) safe.

Which variant a database follows is decided once, when it is first migrated (TimescaleDB if the server
can install the extension then, plain otherwise), and recorded in `schema_variant`; every later migrate
follows the record, not what the server offers now. A plain database whose server later gains the
extension stays plain: its tables are partitioned tables, not hypertables, and the Timescale variants
and features do not apply to them. A database migrated before the record existed is plain unless its
`telemetry` is a hypertable.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import psycopg

log = logging.getLogger(__name__)

MIGRATION_LOCK_ID: Final = 0x466C656574  # "Fleet": one advisory lock id for schema changes
PLAIN: Final = "plain"
TIMESCALE: Final = "timescale"
_HYPERTABLE: Final = (
    "SELECT 1 FROM timescaledb_information.hypertables WHERE hypertable_schema = current_schema()"
    " AND hypertable_name = 'telemetry'"
)


@dataclass(frozen=True, slots=True)
class Migration:
    """One step of the schema history."""

    version: int
    name: str
    plain_sql: str
    timescale_sql: str | None


def load_migrations() -> list[Migration]:
    """Read the schema history shipped with the package, in order."""
    folder = resources.files("models") / "migrations"
    plain: dict[int, tuple[str, str]] = {}
    timescale: dict[int, str] = {}
    for entry in folder.iterdir():
        name = entry.name
        if not name.endswith(".sql") or not name[:4].isdigit():
            continue
        version = int(name[:4])
        if name.endswith(".timescale.sql"):
            timescale[version] = entry.read_text()
        else:
            plain[version] = (name.removesuffix(".sql"), entry.read_text())
    return [
        Migration(version, plain[version][0], plain[version][1], timescale.get(version)) for version in sorted(plain)
    ]


def timescale_available(conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
    """True when the TimescaleDB extension is installed on the server (its image preloads the library)."""
    row = conn.execute("SELECT 1 FROM pg_available_extensions WHERE name = 'timescaledb'").fetchone()
    return row is not None


def _hypertable_exists(conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
    """True when `telemetry` is a TimescaleDB hypertable (False where the extension is not created)."""
    created = conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone()
    return created is not None and conn.execute(_HYPERTABLE).fetchone() is not None


def _schema_variant(conn: psycopg.Connection[tuple[Any, ...]], *, migrated_before: bool) -> str:
    """The variant this database follows: the recorded one, or decided now and recorded."""
    conn.execute(
        "CREATE TABLE IF NOT EXISTS schema_variant ("
        " only_row boolean PRIMARY KEY DEFAULT true CHECK (only_row),"
        " variant text NOT NULL CHECK (variant IN ('plain', 'timescale')),"
        " decided_at timestamptz NOT NULL DEFAULT now())"
    )
    row = conn.execute("SELECT variant FROM schema_variant").fetchone()
    if row is not None:
        return str(row[0])
    if migrated_before:
        # Migrated before the variant was recorded: it is whatever its history table turned out to be.
        variant = TIMESCALE if _hypertable_exists(conn) else PLAIN
    else:
        variant = TIMESCALE if timescale_available(conn) else PLAIN
    conn.execute("INSERT INTO schema_variant (variant) VALUES (%s)", (variant,))
    log.info("this database follows the %s schema variant from now on", variant)
    return variant


def migrate(conn: psycopg.Connection[tuple[Any, ...]], *, retention_days: int = 30) -> list[str]:
    """Apply every pending migration; return the names applied. Safe to call on every start."""
    applied: list[str] = []
    with conn.transaction():
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (MIGRATION_LOCK_ID,))
        conn.execute(
            "CREATE TABLE IF NOT EXISTS schema_migrations ("
            " version integer PRIMARY KEY, name text NOT NULL, variant text NOT NULL,"
            " applied_at timestamptz NOT NULL DEFAULT now())"
        )
        done = {row[0] for row in conn.execute("SELECT version FROM schema_migrations").fetchall()}
        use_timescale = _schema_variant(conn, migrated_before=bool(done)) == TIMESCALE
        if use_timescale:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        for step in load_migrations():
            if step.version in done:
                continue
            variant = TIMESCALE if use_timescale and step.timescale_sql else PLAIN
            sql = step.timescale_sql if variant == TIMESCALE and step.timescale_sql else step.plain_sql
            log.info("applying migration %s (%s)", step.name, variant)
            conn.execute(sql.encode())
            conn.execute(
                "INSERT INTO schema_migrations (version, name, variant) VALUES (%s, %s, %s)",
                (step.version, step.name, variant),
            )
            applied.append(step.name)
        if use_timescale:
            features = (resources.files("models") / "migrations" / "timescale_features.sql").read_text()
            conn.execute(features.replace("%(retention_days)s", str(int(retention_days))).encode())
    return applied


def uses_timescale(conn: psycopg.Connection[tuple[Any, ...]]) -> bool:
    """True when the time-series tables were created as TimescaleDB hypertables."""
    row = conn.execute("SELECT variant FROM schema_migrations WHERE version = 2").fetchone()
    return row is not None and row[0] == TIMESCALE
