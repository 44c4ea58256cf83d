"""Fixtures to run the rules engine against the real servers: as killable `python -m engine` children,
beside an in-process bridge that writes its feed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.integration.bridge.conftest import bridge_settings  # noqa: F401 - a fixture, shared


def engine_env(database_url: str, instance: str, **overrides: str) -> dict[str, str]:
    """The environment of `python -m engine` on `database_url`, named `instance`, polling fast."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("FLEETBRIDGE_")}
    env |= {
        "FLEETBRIDGE_DATABASE_URL": database_url,
        "FLEETBRIDGE_ENGINE_INSTANCE": instance,
        "FLEETBRIDGE_ENGINE_POLL_INTERVAL_MS": "50",
    }
    return env | overrides


@pytest.fixture
def engine_process(tmp_path: Path, database_url: str) -> Iterator[Callable[..., subprocess.Popen[bytes]]]:
    """Start `python -m engine` children by instance name (and, to publish alerts, a broker URL); any
    still running at the end are killed."""
    children: list[subprocess.Popen[bytes]] = []

    def start(instance: str, mqtt_url: str | None = None) -> subprocess.Popen[bytes]:
        log = (tmp_path / f"engine-{instance}-{len(children)}.log").open("wb")
        extra = {"FLEETBRIDGE_MQTT_URL": mqtt_url} if mqtt_url else {}
        child = subprocess.Popen(
            [sys.executable, "-m", "engine"],
            env=engine_env(database_url, instance, **extra),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        log.close()
        children.append(child)
        return child

    yield start
    for child in children:
        if child.poll() is None:
            child.kill()
        child.wait(timeout=10)
