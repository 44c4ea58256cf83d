"""`python -m bridge` stops within a few seconds of a signal even with its database gone, losing nothing.

The bridge reaches PostgreSQL through a TCP proxy of the test's own, which then refuses and closes every
connection, as a stopped server would. Messages received after that cannot be committed; at SIGTERM the
bridge gives them up instead of retrying for ever, and since it never acknowledged them the broker
delivers them again to the next instance, which stores every one.
"""

from __future__ import annotations

import asyncio
import signal
import subprocess
import uuid
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import aiomqtt
import msgspec
import psycopg
import pytest

from config import Settings
from stack.netproxy import Mode, ProxyThread
from tests.integration.bridge.conftest import bridge_env, bridge_stats, running_bridge
from tests.integration.stopping import STOP_LIMIT_S, wait_stopped

pytestmark = pytest.mark.integration

MESSAGES = 20


async def _until(check: Callable[[], object], what: str, limit_s: float = 15.0) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + limit_s
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert loop.time() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.05)


async def test_bridge_stops_promptly_with_its_database_gone_and_the_broker_redelivers_what_it_held(
    bridge_settings: Settings,
    bridge_process: Callable[[dict[str, str]], subprocess.Popen[bytes]],
    redis_url: str,
    database_url: str,
    mqtt_url: str,
    tmp_path: Path,
) -> None:
    db = urlsplit(database_url)
    assert db.hostname is not None
    assert db.port is not None
    device = f"stop-{uuid.uuid4().hex[:8]}"
    client_id = bridge_settings.mqtt.client_id
    with ProxyThread(db.hostname, db.port) as proxy:
        via_proxy = urlunsplit(db._replace(netloc=db.netloc.rsplit(":", 1)[0] + f":{proxy.port}"))
        settings = replace(bridge_settings, database=replace(bridge_settings.database, url=via_proxy))
        child = bridge_process(bridge_env(settings))
        await _until(lambda: _stat(redis_url, client_id, "connects"), "the bridge to connect", limit_s=30.0)
        proxy.set_mode(Mode.REFUSE)
        proxy.cut(reset=False)  # PostgreSQL "stops": its connections close, new ones are refused

        host, port = mqtt_url.removeprefix("mqtt://").split(":")
        async with aiomqtt.Client(host, int(port), protocol=aiomqtt.ProtocolVersion.V5) as client:
            for seq in range(MESSAGES):
                sample = {"seq": seq, "ts": datetime.now(UTC).isoformat(), "metrics": {"fuel": 50}}
                await client.publish(f"fleet/v1/{device}/telemetry", msgspec.json.encode(sample), qos=1)
        await _until(lambda: _stat(redis_url, client_id, "received", at_least=MESSAGES), "the messages to arrive")

        child.send_signal(signal.SIGTERM)
        code = await asyncio.to_thread(wait_stopped, child)
    output = (tmp_path / "bridge-0.log").read_text(errors="replace")
    assert code == 0, f"not stopped {STOP_LIMIT_S} s after SIGTERM:\n{output[-3000:]}"
    assert "Traceback" not in output, output[-3000:]
    assert "uncommitted" in output, "the bridge says what it left to the broker"
    # An empty cache at start is the normal case: said, but not as a warning.
    assert "state cache is empty" in output
    assert "WARNING bridge.rebuild" not in output

    # The next instance under the same client id gets every message again from its broker session.
    async with running_bridge(bridge_settings):

        async def stored() -> bool:
            async with await psycopg.AsyncConnection.connect(database_url) as conn:
                cur = await conn.execute("SELECT count(DISTINCT seq) FROM telemetry WHERE device_id = %s", (device,))
                row = await cur.fetchone()
            return row is not None and row[0] == MESSAGES

        await _until(stored, "the redelivered messages to be stored")


async def _stat(redis_url: str, client_id: str, name: str, *, at_least: int = 1) -> bool:
    stats = await bridge_stats(redis_url, client_id)
    return int(stats.get(name, "0")) >= at_least
