"""Recording the devices' twin reports in PostgreSQL: several API instances hear every report, and the
stored one changes once, to the highest version only."""

from __future__ import annotations

from collections.abc import AsyncIterator

import msgspec
import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from api.twin.reported import ReportRecorder
from models.twin import ReportedConfig
from tests.integration.api.twin_client import add_devices, unique

pytestmark = pytest.mark.integration


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(database_url, min_size=1, max_size=2, kwargs={"autocommit": True}) as opened:
        yield opened


def topic(device_id: str) -> str:
    return f"fleet/v1/{device_id}/config/reported"


def payload(version: int, interval: int) -> bytes:
    return msgspec.json.encode(ReportedConfig(version=version, applied={"report_interval_s": interval}))


async def stored(database_url: str, device_id: str) -> tuple[object, ...] | None:
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute(
            "SELECT reported_version, reported FROM device_twins WHERE device_id = %s", (device_id,)
        )
        return await cursor.fetchone()


async def test_two_instances_hearing_one_report_record_it_once_and_an_older_one_never(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    device = unique("tw-rep")
    await add_devices(database_url, (device, None))
    first, second = ReportRecorder(), ReportRecorder()

    for recorder in (first, second):
        recorder.heard(topic(device), payload(5, 10))
    changed = [await first.record(pool), await second.record(pool)]
    first.heard(topic(device), payload(3, 99))
    older = await first.record(pool)
    second.heard(topic(device), payload(4, 1))
    second.heard(topic(device), payload(8, 30))  # conflated: only the newest heard waits
    newer = await second.record(pool)

    assert changed == [1, 0]
    assert older == 0
    assert newer == 1
    assert await stored(database_url, device) == (8, {"report_interval_s": 30})


async def test_reports_of_unknown_devices_and_unreadable_ones_store_nothing(
    pool: AsyncConnectionPool, database_url: str
) -> None:
    recorder = ReportRecorder()

    recorder.heard(topic("tw-nobody"), payload(1, 5))
    recorder.heard(topic("tw-garbled"), b"{not json")
    recorder.heard("fleet/v1/bad id/config/reported", payload(1, 5))
    changed = await recorder.record(pool)

    assert changed == 0
    assert (recorder.stats.heard, recorder.stats.unreadable) == (1, 2)
    assert await stored(database_url, "tw-nobody") is None
