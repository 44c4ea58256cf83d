"""Test support for the twin's integration tests: merge patches, an API with an MQTT link, waiting."""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import replace
from typing import Any, Final

import aiomqtt
import httpx
import msgspec
import psycopg

from api.server import running
from config import Settings
from config.broker_url import BrokerUrl
from models.twin import DESIRED_DECODER, DesiredConfig, ReportedConfig
from tests.integration.api.conftest import ADMIN_NAME, mint_token

MERGE_PATCH: Final = {"Content-Type": "application/merge-patch+json"}
TIMEOUT_S: Final = 10.0


def any_version() -> dict[str, str]:
    return {**MERGE_PATCH, "If-Match": "*"}


def at(etag: str) -> dict[str, str]:
    return {**MERGE_PATCH, "If-Match": etag}


async def patch(client: httpx.AsyncClient, path: str, body: object, headers: dict[str, str]) -> httpx.Response:
    return await client.patch(path, content=msgspec.json.encode(body), headers=headers)


async def add_devices(database_url: str, *rows: tuple[str, str | None]) -> None:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        for device_id, group in rows:
            await conn.execute("INSERT INTO devices (id, group_name) VALUES (%s, %s)", (device_id, group))


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


@contextlib.asynccontextmanager
async def api_with_broker(settings: Settings, mqtt_url: str, database_url: str) -> AsyncIterator[httpx.AsyncClient]:
    """An API whose MQTT link goes to `mqtt_url`, and an admin's client of it once the link is up."""
    settings = replace(settings, api=replace(settings.api, mqtt_url=mqtt_url))
    async with running(settings) as url, httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S) as client:
        client.headers["Authorization"] = f"Bearer {mint_token(settings, ADMIN_NAME, 'admin')}"
        await until(lambda: client.get("/readyz"), lambda r: bool(r.json()["checks"].get("mqtt", {}).get("ok")))
        yield client


async def until(call: Callable[[], Any], done: Callable[[Any], bool]) -> Any:
    """Call `call` (awaiting it) until `done(result)`; fail after TIMEOUT_S with the last result."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT_S
    while True:
        result = await call()
        if done(result):
            return result
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"still not done: {getattr(result, 'text', result)}")
        await asyncio.sleep(0.05)


async def retained_config(mqtt_url: str, device_id: str) -> list[DesiredConfig]:
    """What a device connecting now with clean start receives on its config topic within a second."""
    address = BrokerUrl.parse(mqtt_url)
    received: list[DesiredConfig] = []
    async with aiomqtt.Client(address.host, address.port, identifier=unique("probe")) as client:
        await client.subscribe(f"fleet/v1/{device_id}/config", qos=1)
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(1.0):
                async for message in client.messages:
                    assert message.retain
                    assert isinstance(message.payload, bytes)
                    received.append(DESIRED_DECODER.decode(message.payload))
    return received


async def report(mqtt_url: str, device_id: str, version: int, applied: dict[str, Any]) -> None:
    address = BrokerUrl.parse(mqtt_url)
    async with aiomqtt.Client(address.host, address.port, identifier=unique("device")) as client:
        payload = msgspec.json.encode(ReportedConfig(version=version, applied=applied))
        await client.publish(f"fleet/v1/{device_id}/config/reported", payload, qos=1, retain=True)
