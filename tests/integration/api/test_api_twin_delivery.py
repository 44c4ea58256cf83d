"""The twin's delivery sweep against real Mosquitto and PostgreSQL: a deleted device's retained document is
cleared, and an id used again gets its new document, never the old one."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import psycopg
import pytest
from psycopg_pool import AsyncConnectionPool

from api import mqtt
from api.mqtt import MqttLink
from api.twin.delivery import TwinDelivery
from api.twin.schemas import DeviceTwin
from api.twin.services import patch_device_twin
from models.twin import DesiredConfig
from tests.integration.api.twin_client import add_devices, retained_config, unique

pytestmark = pytest.mark.integration

TIMEOUT_S = 10.0


@pytest.fixture
async def pool(database_url: str) -> AsyncIterator[AsyncConnectionPool]:
    async with AsyncConnectionPool(database_url, min_size=1, max_size=4, kwargs={"autocommit": True}) as opened:
        yield opened


@pytest.fixture
async def delivery(mqtt_url: str) -> AsyncIterator[TwinDelivery]:
    link = MqttLink(mqtt_url, subscriptions=[], on_message=lambda topic, payload: None)
    twin_delivery = TwinDelivery(link)
    connected = asyncio.Event()
    link.on_connect(connected.set)
    async with mqtt.running(link):
        await asyncio.wait_for(connected.wait(), TIMEOUT_S)
        yield twin_delivery


async def delete_device(database_url: str, device_id: str) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("DELETE FROM devices WHERE id = %s", (device_id,))


async def test_a_deleted_devices_retained_document_is_cleared_by_the_sweep(
    pool: AsyncConnectionPool, delivery: TwinDelivery, database_url: str, mqtt_url: str
) -> None:
    device = unique("tw-del")
    await add_devices(database_url, (device, None))
    await patch_device_twin(pool, device, {"report_interval_s": 7}, if_match="*", by="test")
    assert await delivery.deliver(pool, device)
    before = await retained_config(mqtt_url, device)

    await delete_device(database_url, device)
    await delivery.sweep(pool)
    after = await retained_config(mqtt_url, device)

    assert [config.desired for config in before] == [{"report_interval_s": 7}]
    assert after == []


async def test_an_id_used_again_gets_its_new_document_and_never_the_former_one(
    pool: AsyncConnectionPool, delivery: TwinDelivery, database_url: str, mqtt_url: str
) -> None:
    device = unique("tw-del")
    await add_devices(database_url, (device, None))
    await patch_device_twin(pool, device, {"report_interval_s": 7, "old": True}, if_match="*", by="test")
    assert await delivery.deliver(pool, device)
    await delete_device(database_url, device)
    await add_devices(database_url, (device, None))
    renewed = await patch_device_twin(pool, device, {"report_interval_s": 60}, if_match="*", by="test")

    await delivery.sweep(pool)
    received = await retained_config(mqtt_url, device)

    assert isinstance(renewed, DeviceTwin)
    assert received == [DesiredConfig(version=renewed.version, desired={"report_interval_s": 60})]
