"""Timestamps and readings as field firmware sends them, through the real Mosquitto, bridge and PostgreSQL:
`ts` in Unix epoch milliseconds, and the field-sensor format (a reading, a one-second aggregate, an array
of them, JSON or MessagePack) stored as samples of the topic's device; a redelivered reading stored once.
"""

from __future__ import annotations

import asyncio
import uuid
from datetime import UTC, datetime, timedelta

import aiomqtt
import msgspec
import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from config import Settings
from models.state import Persisted, PersistedRange, RejectedNotice
from models.telemetry import SENSOR_BOOT, sensor_identity
from tests.integration.bridge.conftest import running_bridge
from tests.integration.bridge.test_pipeline import broker, wait_committed

pytestmark = pytest.mark.integration


def msgpack_properties() -> Properties:
    properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
    properties.ContentType = "application/msgpack"
    return properties


async def test_bridge_stores_epoch_ms_samples_and_field_sensor_readings_of_the_topics_device(
    bridge_settings: Settings,
) -> None:
    host, port = broker(bridge_settings.mqtt.url)
    device_id = f"sensor-{uuid.uuid4().hex[:8]}"
    topic = f"fleet/v1/{device_id}/telemetry"
    at = datetime.now(UTC).replace(microsecond=0) - timedelta(seconds=30)
    at_ms = int(at.timestamp() * 1000)
    reading = {"sensorId": "temperature", "timestamp": at_ms, "value": 21.5, "unit": "°C", "quality": "good"}
    summary = {
        "sensorId": f"{device_id}.vibration",
        "timestamp": (at + timedelta(seconds=1)).isoformat(),
        "min": 1.0,
        "max": 4.0,
        "avg": 2.5,
        "count": 1000,
        "stdDev": 0.7,
    }
    array = [
        {"sensorId": "pressure", "timestamp": at_ms, "value": 80.0, "unit": "PSI"},  # same instant, other sensor
        {"sensorId": "pressure", "timestamp": at_ms + 1000, "value": 81.0, "unit": "bar"},  # refused: unit
    ]
    publications: list[tuple[bytes, Properties | None]] = [
        (msgspec.json.encode({"seq": 7, "ts": at_ms, "metrics": {"fuel": 60.0}}), None),
        (msgspec.json.encode(reading), None),
        (msgspec.json.encode(summary), None),
        (msgspec.json.encode(array), None),
        (msgspec.msgpack.encode([{"sensorId": "level", "timestamp": at_ms, "value": 55.0}]), msgpack_properties()),
        (msgspec.json.encode(reading), None),  # sent again: stored once
    ]
    temperature_key = sensor_identity("temperature", aggregate=False, ts=at)

    def temperature_persisted(payloads: list[bytes]) -> bool:
        ranges = {r for p in payloads for r in msgspec.json.decode(p, type=Persisted).ranges}
        return PersistedRange(*temperature_key, temperature_key[1]) in ranges

    replies: dict[str, list[bytes]] = {"persisted": [], "rejected": []}
    async with (
        running_bridge(bridge_settings) as bridge,
        aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5) as device,
    ):
        await device.subscribe(f"fleet/v1/{device_id}/+", qos=1)
        for payload, properties in publications:
            await device.publish(topic, payload, qos=1, properties=properties)
        await wait_committed(bridge, len(publications))

        async def collect() -> None:
            async for message in device.messages:
                kind = str(message.topic).rsplit("/", 1)[-1]
                if kind in replies and isinstance(message.payload, bytes):
                    replies[kind].append(message.payload)
                if replies["rejected"] and temperature_persisted(replies["persisted"]):
                    return

        await asyncio.wait_for(collect(), timeout=10)

    with psycopg.connect(bridge_settings.database.url) as conn:
        rows = conn.execute(
            "SELECT boot, seq, ts, fuel, temperature, pressure, level, quality, agg FROM telemetry"
            " WHERE device_id = %s ORDER BY ts, boot, seq",
            (device_id,),
        ).fetchall()
    by_column = {
        name: [(row[2], row[i]) for row in rows if row[i] is not None]
        for i, name in enumerate(("boot", "seq", "ts", "fuel", "temperature", "pressure", "level", "quality", "agg"))
    }
    assert len(rows) == 5  # the sample, temperature once, vibration, pressure, level; not the bar reading
    assert by_column["fuel"] == [(at, 60.0)]
    assert by_column["temperature"] == [(at, 21.5)]
    assert by_column["pressure"] == [(at, 80.0)]
    assert by_column["level"] == [(at, 55.0)]
    assert by_column["agg"] == [(at + timedelta(seconds=1), {"vibration": [1.0, 4.0, 2.5, 1000, 0.7]})]
    assert [row[7] for row in rows if row[4] is not None] == [100]  # "good"
    assert (0, 7) in {(row[0], row[1]) for row in rows}
    assert temperature_key in {(row[0], row[1]) for row in rows}
    assert sum(1 for row in rows if row[0] == SENSOR_BOOT) == 4

    assert temperature_persisted(replies["persisted"])  # the device learns which reading is stored
    (notice,) = (msgspec.json.decode(p, type=RejectedNotice) for p in replies["rejected"])
    assert notice.index == 1
    assert "unit 'bar'" in notice.reason
    assert (notice.boot, notice.seq) == sensor_identity("pressure", aggregate=False, ts=at + timedelta(seconds=1))
