"""The PostgreSQL sink: idempotent batches, and splitting a batch the database refuses."""

from __future__ import annotations

import secrets
from datetime import UTC, datetime, timedelta

import msgspec
import psycopg
import pytest

from bridge.decode import Decoded, decode_message
from bridge.message import RawMessage
from bridge.sink import PostgresTelemetrySink
from models.telemetry import Limits

pytestmark = pytest.mark.integration
NOW = datetime.now(UTC).replace(microsecond=0)


def decoded(device: str, seq: int, **fields: object) -> Decoded:
    payload = msgspec.json.encode({"seq": seq, "ts": (NOW - timedelta(seconds=seq)).isoformat(), **fields})
    message = RawMessage(f"fleet/v1/{device}/telemetry", payload, None, NOW)
    result = decode_message(message, now=NOW, limits=Limits())
    assert result.rows, result.rejections
    return result


async def test_sink_writes_a_redelivered_batch_only_once(database_url: str) -> None:
    sink = PostgresTelemetrySink(database_url)
    batch = [decoded("s1", n, metrics={"fuel": 10.0, "custom_metric": 1.5}) for n in range(50)]
    try:
        first = await sink.write(batch)
        second = await sink.write([*batch[10:], decoded("s1", 50)])
    finally:
        await sink.close()
    assert (first.inserted, second.inserted) == (50, 1)
    with psycopg.connect(database_url) as conn:
        row = conn.execute(
            "SELECT count(*), count(DISTINCT seq), max(extra->>'custom_metric') FROM telemetry"
        ).fetchone()
    assert row == (51, 51, "1.5")


async def test_sink_isolates_messages_the_database_refuses_and_commits_the_rest(database_url: str) -> None:
    batch = [decoded("s2", n, pos={"lat": 1.0, "lon": 1.0}) for n in range(40)]
    # Validation keeps such rows out; here the database's own CHECK must catch them, as a last line.
    for index in (7, 31):
        row = list(batch[index].rows[0])
        row[3] = 123.0  # lat
        batch[index].rows[0] = tuple(row)
    sink = PostgresTelemetrySink(database_url)
    try:
        report = await sink.write(batch)
    finally:
        await sink.close()
    assert sorted(msgspec.json.decode(d.payload)["seq"] for d in report.refused_by_database) == [7, 31]
    assert report.inserted == 38
    with psycopg.connect(database_url) as conn:
        seqs = [r[0] for r in conn.execute("SELECT seq FROM telemetry ORDER BY seq").fetchall()]
        dead = conn.execute("SELECT reason, payload FROM rejected_messages ORDER BY id").fetchall()
    assert seqs == [n for n in range(40) if n not in (7, 31)]
    assert len(dead) == 2
    assert all(reason.startswith("database refused") for reason, _ in dead)


async def test_sink_never_stalls_on_a_dead_letter_the_database_refuses(database_url: str) -> None:
    good = decoded("s3", 1)
    bad = decoded("s3", 2, pos={"lat": 1.0, "lon": 1.0})
    row = list(bad.rows[0])
    row[3] = 123.0  # refused by the CHECK on lat...
    bad.rows[0] = tuple(row)
    # ...and its dead letter's topic is too long (and incompressible) for the unique index.
    bad.topic = "fleet/v1/s3/" + secrets.token_hex(5_000)
    sink = PostgresTelemetrySink(database_url)
    try:
        report = await sink.write([good, bad])
    finally:
        await sink.close()
    assert report.inserted == 1
    with psycopg.connect(database_url) as conn:
        dead = conn.execute("SELECT length(topic), reason FROM rejected_messages").fetchall()
    assert len(dead) == 1
    assert dead[0][0] == 512
    assert dead[0][1].startswith("database refused")
