"""Apply the ordered schema history to PostgreSQL, with or without TimescaleDB.

Migrations are `models/migrations/NNNN_name.sql`. Where a `NNNN_name.timescale.sql` variant exists and
the TimescaleDB extension is available, the variant is applied instead; the history (version numbers)
is the same on both. After the history, `timescale_features.sql` runs idempotently where TimescaleDB
is installed. An advisory lock makes concurrent runs (`fleet db migrate`, `fleet up`) safe.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from importlib import resources
from typing import Any, Final

import psycopg

log = logging.getLogger(__name__)

MIGRATION_LOCK_ID: Final = 0x466C656574  # "Fleet": one advisory lock id for schema changes


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
        use_timescale = timescale_available(conn)
        if use_timescale:
            conn.execute("CREATE EXTENSION IF NOT EXISTS timescaledb")
        for step in load_migrations():
            if step.version in done:
                continue
            variant = "timescale" if use_timescale and step.timescale_sql else "plain"
            sql = step.timescale_sql if variant == "timescale" and step.timescale_sql else step.plain_sql
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
    return row is not None and row[0] == "timescale"
