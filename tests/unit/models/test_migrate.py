"""Which SQL `migrate` applies: the TimescaleDB variants and features only where the extension exists."""

from __future__ import annotations

from typing import Any, cast

import psycopg

from models.migrate import load_migrations, migrate
from models.rollups import ROLLUPS_MIGRATION


class _Result:
    def __init__(self, rows: list[tuple[Any, ...]]) -> None:
        self._rows = rows

    def fetchone(self) -> tuple[Any, ...] | None:
        return self._rows[0] if self._rows else None

    def fetchall(self) -> list[tuple[Any, ...]]:
        return self._rows


class _Transaction:
    def __enter__(self) -> None:
        return None

    def __exit__(self, *exc: object) -> None:
        return None


class RecordingConnection:
    """Records every statement; answers the two questions `migrate` asks (extension, versions done)."""

    def __init__(self, *, timescale: bool) -> None:
        self.timescale = timescale
        self.executed: list[str] = []
        self.params: list[object] = []

    def transaction(self) -> _Transaction:
        return _Transaction()

    def execute(self, statement: str | bytes, params: object = None) -> _Result:
        text = statement.decode() if isinstance(statement, bytes) else statement
        self.executed.append(text)
        self.params.append(params)
        if "pg_available_extensions" in text:
            return _Result([(1,)] if self.timescale else [])
        return _Result([])


def applied(timescale: bool) -> str:
    conn = RecordingConnection(timescale=timescale)
    migrate(cast(psycopg.Connection[tuple[Any, ...]], conn))
    return "\n".join(conn.executed)


def test_migrations_ship_a_timescale_variant_of_the_rollups() -> None:
    step = next(m for m in load_migrations() if m.version == ROLLUPS_MIGRATION)
    assert "PARTITION BY RANGE (ts)" in step.plain_sql
    assert step.timescale_sql is not None
    assert "timescaledb.continuous" in step.timescale_sql


def test_migrate_applies_timescale_sql_only_where_the_extension_exists() -> None:
    plain = applied(timescale=False)
    timescale = applied(timescale=True)

    assert "timescaledb" not in plain.replace("pg_available_extensions WHERE name = 'timescaledb'", "")
    assert "CREATE TABLE telemetry_1m" in plain
    assert "CREATE EXTENSION IF NOT EXISTS timescaledb" in timescale
    assert "CREATE MATERIALIZED VIEW telemetry_1m WITH (timescaledb.continuous" in timescale
    assert "CREATE TABLE telemetry_1m" not in timescale
    assert "add_retention_policy('telemetry_1h'" in timescale


def test_migrate_records_the_variant_a_new_database_follows() -> None:
    for timescale, variant in ((True, "timescale"), (False, "plain")):
        conn = RecordingConnection(timescale=timescale)
        migrate(cast(psycopg.Connection[tuple[Any, ...]], conn))
        recorded = [p for s, p in zip(conn.executed, conn.params, strict=True) if "INSERT INTO schema_variant" in s]
        assert recorded == [(variant,)]
