"""The migrated schema: SQLModel mappings match it, partitions roll forward, retention drops old data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlmodel import Session as OrmSession
from sqlmodel import SQLModel, create_engine, select

from models import tables
from models.migrate import migrate
from models.partitions import existing_partitions, maintain, partition_name

pytestmark = pytest.mark.integration


def test_sqlmodel_tables_match_the_migrated_columns(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        for table in (tables.Device, tables.DeviceGroup, tables.RejectedMessage, tables.Telemetry):
            name = table.__tablename__
            rows = conn.execute(
                "SELECT column_name FROM information_schema.columns WHERE table_name = %s", (name,)
            ).fetchall()
            assert {r[0] for r in rows} == set(SQLModel.metadata.tables[str(name)].columns.keys()), name


def test_sqlmodel_reads_what_sql_wrote(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        conn.execute("INSERT INTO devices (id, group_name) VALUES ('orm-1', 'north')")
    engine = create_engine(database_url.replace("postgresql://", "postgresql+psycopg://"))
    try:
        with OrmSession(engine) as session:
            device = session.exec(select(tables.Device).where(tables.Device.id == "orm-1")).one()
    finally:
        engine.dispose()
    assert (device.group_name, device.kind, device.metadata_) == ("north", "truck", {})


def test_migrate_is_idempotent(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert migrate(conn) == []


def test_maintain_creates_partitions_ahead_and_drops_expired_ones(database_url: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        later = now + timedelta(days=10)
        report = maintain(conn, now=later, ahead_days=7, retention_days=30)
        names = existing_partitions(conn, "telemetry")
        assert partition_name("telemetry", (later + timedelta(days=7)).date()) in names
        expired = partition_name("telemetry", (now - timedelta(days=30)).date())
        assert expired in report.dropped
        assert expired not in names
        assert maintain(conn, now=later, ahead_days=7, retention_days=30).created == []


def test_rows_in_the_default_partition_move_into_a_new_partition(database_url: str) -> None:
    far = datetime.now(UTC) + timedelta(days=20)  # beyond the partitions created ahead
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO telemetry (ts, received_at, seq, device_id) VALUES (%s, now(), 1, 'p-1')", (far,))
        assert conn.execute("SELECT count(*) FROM telemetry_default").fetchone() == (1,)
        maintain(conn, now=far, ahead_days=1, retention_days=30)
        assert conn.execute("SELECT count(*) FROM telemetry_default").fetchone() == (0,)
        target = partition_name("telemetry", far.date())
        assert conn.execute(f"SELECT count(*) FROM {target}").fetchone() == (1,)
        assert conn.execute("SELECT count(*) FROM telemetry WHERE device_id = 'p-1'").fetchone() == (1,)


def test_retention_removes_expired_rows_from_the_default_partition(database_url: str) -> None:
    now = datetime.now(UTC)
    with psycopg.connect(database_url, autocommit=True) as conn:
        old = now - timedelta(days=45)
        conn.execute("INSERT INTO telemetry (ts, received_at, seq, device_id) VALUES (%s, now(), 1, 'old')", (old,))
        maintain(conn, now=now, ahead_days=1, retention_days=30)
        assert conn.execute("SELECT count(*) FROM telemetry WHERE device_id = 'old'").fetchone() == (0,)
