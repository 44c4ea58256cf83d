"""The migrated schema: SQLModel mappings match it, partitions roll forward, retention drops old data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import psycopg
import pytest
from sqlmodel import Session as OrmSession
from sqlmodel import SQLModel, create_engine, select

from models import migrate as migrate_module
from models import tables
from models.migrate import migrate, uses_timescale
from models.partitions import existing_partitions, maintain, partition_name
from models.rollups import ROLLUPS, ROLLUPS_MIGRATION
from tests.contracts.buckets import brute_force

pytestmark = pytest.mark.integration


def test_sqlmodel_tables_match_the_migrated_columns(database_url: str) -> None:
    with psycopg.connect(database_url) as conn:
        for table in (
            tables.Device,
            tables.DeviceGroup,
            tables.PresenceChange,
            tables.RejectedMessage,
            tables.Telemetry,
            tables.TelemetryMinute,
            tables.TelemetryHour,
        ):
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


def _server_gains_timescaledb(monkeypatch: pytest.MonkeyPatch) -> None:
    # TimescaleDB cannot be installed here: the detection is made to say it could be.
    monkeypatch.setattr(migrate_module, "timescale_available", lambda conn: True)


def test_a_plain_database_stays_plain_when_the_server_gains_timescaledb(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _server_gains_timescaledb(monkeypatch)
    with psycopg.connect(database_url, autocommit=True) as conn:
        assert migrate(conn) == []
        assert conn.execute("SELECT variant FROM schema_variant").fetchall() == [("plain",)]
        assert not uses_timescale(conn)
        assert conn.execute("SELECT 1 FROM pg_extension WHERE extname = 'timescaledb'").fetchone() is None


def test_a_database_migrated_before_the_variant_was_recorded_is_plain_without_a_hypertable(
    database_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    _server_gains_timescaledb(monkeypatch)
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE schema_variant")
        assert migrate(conn) == []
        assert conn.execute("SELECT variant FROM schema_variant").fetchall() == [("plain",)]


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


@pytest.mark.parametrize("table", ["telemetry_1m", "telemetry_1h"])
def test_rollups_are_partitioned_and_retained_like_telemetry(database_url: str, table: str) -> None:
    now = datetime.now(UTC)
    later = now + timedelta(days=10)
    with psycopg.connect(database_url, autocommit=True) as conn:
        old = (now - timedelta(days=45)).replace(minute=0, second=0, microsecond=0)
        conn.execute(f"INSERT INTO {table} (device_id, ts, samples) VALUES ('old', %s, 1)", (old,))
        far = (now + timedelta(days=20)).replace(minute=0, second=0, microsecond=0)
        conn.execute(f"INSERT INTO {table} (device_id, ts, samples) VALUES ('far', %s, 1)", (far,))

        report = maintain(conn, now=later, ahead_days=7, retention_days=30)
        names = existing_partitions(conn, table)
        assert partition_name(table, (later + timedelta(days=7)).date()) in names
        expired = partition_name(table, (now - timedelta(days=30)).date())
        assert expired in report.dropped
        assert expired not in names
        maintain(conn, now=far, ahead_days=1, retention_days=30)
        assert conn.execute(f"SELECT device_id FROM {table}").fetchall() == [("far",)]
        assert conn.execute(f"SELECT count(*) FROM {table}_default").fetchone() == (0,)
        in_its_day = partition_name(table, far.date())
        assert conn.execute(f"SELECT count(*) FROM {in_its_day}").fetchone() == (1,)


def test_rollup_migration_summarises_the_history_already_stored(database_url: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    with psycopg.connect(database_url, autocommit=True) as conn:
        # The database as it was before step 7, with history in it.
        conn.execute("DROP TABLE telemetry_1m, telemetry_1h")
        conn.execute("DELETE FROM schema_migrations WHERE version = %s", (ROLLUPS_MIGRATION,))
        for seq in range(200):
            ts = now - timedelta(minutes=150) + timedelta(seconds=seq * 45)
            conn.execute(
                "INSERT INTO telemetry (ts, received_at, seq, device_id, fuel, odometer, lat, lon)"
                " VALUES (%s, now(), %s, %s, %s, %s, %s, %s)",
                (ts, seq, f"b-{seq % 2}", seq / 4, 1000 + seq, (None if seq % 3 else 10 + seq / 100), 5.0),
            )
        assert [name for name in migrate(conn) if name.startswith("0007")] == ["0007_rollups"]
        rows = conn.execute("SELECT * FROM telemetry").fetchall()
        columns = [c.name for c in conn.execute("SELECT * FROM telemetry LIMIT 0").description or []]
        for rollup in ROLLUPS:
            expected = brute_force([dict(zip(columns, r, strict=True)) for r in rows], rollup.width)
            stored = conn.execute(
                f"SELECT device_id, ts, samples, fuel_n, fuel_min, fuel_max, odometer_max, pos_n, pos_seq FROM {rollup.table}"
            ).fetchall()
            assert {(d, ts): rest for d, ts, *rest in stored} == {
                key: [
                    s.samples,
                    s.metrics["fuel"].n,
                    s.metrics["fuel"].low,
                    s.metrics["fuel"].high,
                    s.metrics["odometer"].high,
                    s.fixes,
                    s.last_fix[1] if s.last_fix else None,
                ]
                for key, s in expected.items()
            }


def test_sample_identity_migration_rekeys_the_history_and_keeps_every_row(database_url: str) -> None:
    now = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    with psycopg.connect(database_url, autocommit=True) as conn:
        # The database as it was before step 11: keyed (device_id, ts, seq), rollups without pos_boot.
        for table in ("telemetry", "events"):
            conn.execute(f"ALTER TABLE {table} DROP CONSTRAINT {table}_pkey, ADD PRIMARY KEY (device_id, ts, seq)")
        conn.execute("ALTER TABLE telemetry_1m DROP COLUMN pos_boot")
        conn.execute("ALTER TABLE telemetry_1h DROP COLUMN pos_boot")
        conn.execute("DELETE FROM schema_migrations WHERE version = 11")
        for seq in range(5):
            conn.execute(
                "INSERT INTO telemetry (ts, received_at, seq, boot, device_id, lat, lon) VALUES (%s, now(), %s, 3, 'k-1', 1, 2)",
                (now + timedelta(seconds=seq), seq),
            )
        conn.execute(
            "INSERT INTO telemetry_1m (device_id, ts, samples, pos_n, pos_ts, pos_seq, lat, lon)"
            " VALUES ('k-1', date_bin('1 minute', %s::timestamptz, '2000-01-01Z'), 5, 5, %s, 4, 1, 2)",
            (now + timedelta(seconds=4), now + timedelta(seconds=4)),
        )

        assert [name for name in migrate(conn) if name.startswith("0011")] == ["0011_sample_identity"]

        key = conn.execute(
            "SELECT array_agg(a.attname ORDER BY k.n) FROM pg_constraint c"
            " CROSS JOIN LATERAL unnest(c.conkey) WITH ORDINALITY AS k(attnum, n)"
            " JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = k.attnum"
            " WHERE c.conname = 'telemetry_pkey' AND c.conrelid = 'telemetry'::regclass"
        ).fetchone()
        assert key == (["device_id", "ts", "boot", "seq"],)
        assert conn.execute("SELECT count(*) FROM telemetry WHERE device_id = 'k-1'").fetchone() == (5,)
        assert conn.execute("SELECT pos_boot FROM telemetry_1m WHERE device_id = 'k-1'").fetchall() == [(3,)]
        # Another boot's sample of the same instant and seq is now a row of its own.
        conn.execute(
            "INSERT INTO telemetry (ts, received_at, seq, boot, device_id) VALUES (%s, now(), 0, 4, 'k-1')", (now,)
        )


def test_maintain_skips_tables_a_schema_does_not_have_yet(database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("DROP TABLE telemetry_1m, telemetry_1h")

        report = maintain(conn, now=datetime.now(UTC) + timedelta(days=3), ahead_days=7, retention_days=30)

        assert any(name.startswith("telemetry_p") for name in report.created)
        assert not any(name.startswith("telemetry_1") for name in report.created + report.dropped)


def test_every_presence_change_is_recorded_and_retention_keeps_the_last_one_before_its_horizon(
    database_url: str,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    steps = [(now - timedelta(days=50), "online"), (now - timedelta(days=40), "offline"), (now, "online")]
    with psycopg.connect(database_url, autocommit=True) as conn:
        conn.execute("INSERT INTO devices (id) VALUES ('pres-1')")  # no presence yet: nothing recorded
        for at, presence in steps:
            conn.execute(
                "UPDATE devices SET presence = %s, presence_source = 'status', presence_since = %s WHERE id = 'pres-1'",
                (presence, at),
            )
            # Re-asserting the same presence (a later heartbeat, another source) is not a change.
            conn.execute("UPDATE devices SET presence_source = 'heartbeat' WHERE id = 'pres-1'")
            conn.execute("UPDATE devices SET presence = %s WHERE id = 'pres-1'", (presence,))
        recorded = conn.execute(
            "SELECT at, presence, source FROM presence_history WHERE device_id = 'pres-1' ORDER BY at"
        ).fetchall()
        assert recorded == [(at, presence, "status") for at, presence in steps]

        maintain(conn, now=now, ahead_days=1, retention_days=30)
        kept = conn.execute("SELECT at FROM presence_history WHERE device_id = 'pres-1' ORDER BY at").fetchall()
        assert kept == [(steps[1][0],), (now,)]  # the presence at the horizon (offline since day -40) stays known


def test_retention_forgets_closed_alerts_and_engine_outputs_older_than_the_history_and_keeps_open_alerts(
    database_url: str,
) -> None:
    now = datetime.now(UTC).replace(microsecond=0)
    old, recent = now - timedelta(days=45), now - timedelta(days=5)
    with psycopg.connect(database_url, autocommit=True) as conn:
        rule = conn.execute(
            "INSERT INTO alert_rules (name, metric, op, threshold, severity) VALUES ('hot', 'engine_temp', '>', 110,"
            " 'major') RETURNING id"
        ).fetchone()
        assert rule is not None
        alerts = {}
        for name, state, at in (
            ("old-closed", "cleared", old),
            ("old-open", "active", old),
            ("new", "cleared", recent),
        ):
            row = conn.execute(
                "INSERT INTO alerts (rule_id, device_id, started_at, raised_at, severity, state, message, updated_at)"
                " VALUES (%s, %s, %s, %s, 'major', %s, 'hot', %s) RETURNING id",
                (rule[0], name, at, at, state, at),
            ).fetchone()
            assert row is not None
            alerts[name] = row[0]
            conn.execute("INSERT INTO alert_events (alert_id, kind) VALUES (%s, 'raised')", (row[0],))
            conn.execute("INSERT INTO alert_comments (alert_id, author, body) VALUES (%s, 'olga', 'seen')", (row[0],))
        for device, at in (("old", old), ("new", recent)):
            conn.execute(
                "INSERT INTO trips (device_id, started_at, ended_at, start_lat, start_lon, end_lat, end_lon, distance_m,"
                " duration_s, max_speed_kmh, avg_speed_kmh, from_odometer, complete)"
                " VALUES (%s, %s, %s, 0, 0, 0, 0, 1000, 600, 50, 6, false, true)",
                (device, at - timedelta(hours=1), at),
            )

        maintain(conn, now=now, ahead_days=1, retention_days=30)
        kept = conn.execute("SELECT device_id FROM alerts ORDER BY device_id").fetchall()
        assert kept == [("new",), ("old-open",)]
        for table in ("alert_events", "alert_comments"):
            rows = conn.execute(f"SELECT alert_id FROM {table} ORDER BY alert_id").fetchall()
            assert sorted(r[0] for r in rows) == sorted([alerts["old-open"], alerts["new"]])
        assert conn.execute("SELECT device_id FROM trips").fetchall() == [("new",)]
