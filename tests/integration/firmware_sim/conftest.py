"""Fixtures for the simulator's integration tests: a broker of a test's own, and raw subscribers.

Tests that only publish use the session broker (`mqtt_url` from tests/conftest.py) with device ids
of their own. Tests that stop, freeze or restart the broker get `sim_broker`: a Mosquitto of their
own, started from the production config by `broker.process`, on a port that stays the same across
restarts.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker.process import start_mosquitto
from stack.process import ServerProcess
from tests.integration.firmware_sim.sim_mqtt import RawSubscriber


@pytest.fixture
def sim_broker(servers_dir: Path) -> Iterator[ServerProcess]:
    """A Mosquitto for one test, which the test may stop, freeze (SIGSTOP), kill and restart."""
    with start_mosquitto(servers_dir / f"sim-mosquitto-{uuid.uuid4().hex[:8]}") as server:
        yield server


@pytest.fixture
def raw_subscriber() -> Iterator[type[RawSubscriber]]:
    """The `RawSubscriber` class; its instances are closed at teardown."""
    made: list[RawSubscriber] = []

    class Tracked(RawSubscriber):
        def __init__(self, url: str, filters: list[str]) -> None:
            super().__init__(url, filters)
            made.append(self)

    yield Tracked
    for subscriber in made:
        subscriber.close()
