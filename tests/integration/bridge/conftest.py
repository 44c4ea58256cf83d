"""Fixtures to run the bridge against the real servers, in-process or as a killable child process."""

from __future__ import annotations

import asyncio
import contextlib
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import replace
from pathlib import Path

import pytest
import redis.asyncio as aioredis

from bridge.app import Bridge, build
from config import Settings, load_settings


@pytest.fixture
def bridge_settings(mqtt_url: str, redis_url: str, database_url: str) -> Settings:
    """Settings for one bridge instance with a client id of its own (a fresh broker session)."""
    settings = load_settings(
        {
            "FLEETBRIDGE_MQTT_URL": mqtt_url,
            "FLEETBRIDGE_REDIS_URL": redis_url,
            "FLEETBRIDGE_DATABASE_URL": database_url,
            "FLEETBRIDGE_BRIDGE_STATS_INTERVAL_MS": "100",
        }
    )
    return replace(
        settings,
        mqtt=replace(settings.mqtt, client_id=f"bridge-{uuid.uuid4().hex[:8]}", share_group=f"g{uuid.uuid4().hex[:8]}"),
    )


@contextlib.asynccontextmanager
async def running_bridge(settings: Settings) -> AsyncIterator[Bridge]:
    """Run a bridge in this event loop until the block ends; then stop it cleanly."""
    bridge, redis = build(settings)
    stop = asyncio.Event()
    task = asyncio.create_task(bridge.run(stop))
    try:
        await asyncio.wait_for(bridge._source.connected.wait(), timeout=10)
        yield bridge
    finally:
        stop.set()
        await asyncio.wait_for(task, timeout=30)
        await redis.aclose()


def bridge_env(settings: Settings, **overrides: str) -> dict[str, str]:
    """The environment that makes `python -m bridge` use `settings`."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLEETBRIDGE_")}
    env.update(
        {
            "FLEETBRIDGE_MQTT_URL": settings.mqtt.url,
            "FLEETBRIDGE_MQTT_CLIENT_ID": settings.mqtt.client_id,
            "FLEETBRIDGE_MQTT_SHARE_GROUP": settings.mqtt.share_group,
            "FLEETBRIDGE_REDIS_URL": settings.redis.url,
            "FLEETBRIDGE_DATABASE_URL": settings.database.url,
            "FLEETBRIDGE_BRIDGE_STATS_INTERVAL_MS": "100",
        }
    )
    env.update(overrides)
    return env


@pytest.fixture
def bridge_process(tmp_path: Path) -> Iterator[Callable[[dict[str, str]], subprocess.Popen[bytes]]]:
    """Start `python -m bridge` children; any still running at the end are killed."""
    children: list[subprocess.Popen[bytes]] = []

    def start(env: dict[str, str]) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"bridge-{len(children)}.log").open("wb")
        child = subprocess.Popen([sys.executable, "-m", "bridge"], env=env, stdout=log, stderr=subprocess.STDOUT)
        log.close()
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)


async def bridge_stats(redis_url: str, client_id: str) -> dict[str, str]:
    """The counters a bridge instance publishes to Redis."""
    client = aioredis.Redis.from_url(redis_url, decode_responses=True)
    try:
        stats = await client.hgetall(f"fleet:bridge:{client_id}")
        return {str(key): str(value) for key, value in stats.items()}
    finally:
        await client.aclose()
