"""Twin benchmark: how long a device's PATCH takes with its retained publish, and how long a group's
defaults take to reach every member's `config` topic — through real Mosquitto, Redis and PostgreSQL and
an API served in this process.

* `device` — `--patches` PATCHes of one device's twin, one at a time (p50/p99 of the round trip, which
  includes the commit and the publish with its PUBACK);
* `group` — one PATCH of a group's defaults with `--devices` members: the time until a wildcard
  subscriber has received every member's document (published one by one by the delivery sweep).

    .venv/bin/python bench/twin.py --devices 5000
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from pathlib import Path

import aiomqtt
import httpx
import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from servers import progress, start_servers  # noqa: E402

from api.accounts.roles import Role  # noqa: E402
from api.auth import TokenIssuer, build_auth  # noqa: E402
from api.server import running  # noqa: E402
from config import load_settings  # noqa: E402
from config.broker_url import BrokerUrl  # noqa: E402
from stack.process import ServerProcess  # noqa: E402

MERGE_PATCH = {"Content-Type": "application/merge-patch+json", "If-Match": "*"}
SECRET = "bench-secret-that-is-long-enough-for-hs256-0123456789"


async def wait_for_link(client: httpx.AsyncClient) -> None:
    for _ in range(400):
        if (await client.get("/readyz")).json()["checks"].get("mqtt", {}).get("ok"):
            return
        await asyncio.sleep(0.05)
    raise RuntimeError("the API's MQTT link did not come up")


async def bench(args: argparse.Namespace, mqtt_url: str, redis_url: str, database_url: str) -> None:
    with psycopg.connect(database_url, autocommit=True) as conn:
        with conn.cursor().copy("COPY devices (id, group_name) FROM STDIN") as copy:
            for i in range(args.devices):
                copy.write_row((f"twin-{i:06d}", "bench"))
        conn.execute("INSERT INTO devices (id) VALUES ('twin-solo')")
    settings = load_settings(
        {
            "FLEETBRIDGE_REDIS_URL": redis_url,
            "FLEETBRIDGE_DATABASE_URL": database_url,
            "FLEETBRIDGE_API_JWT_SECRET": SECRET,
            "FLEETBRIDGE_API_MQTT_URL": mqtt_url,
        }
    )
    token = TokenIssuer(build_auth(settings.api)).issue("bench", Role.ADMIN)
    headers = {"Authorization": f"Bearer {token}", **MERGE_PATCH}
    address = BrokerUrl.parse(mqtt_url)
    async with running(settings) as url, httpx.AsyncClient(base_url=url, timeout=60, headers=headers) as client:
        await wait_for_link(client)
        durations = []
        for i in range(args.patches):
            started = time.perf_counter()
            response = await client.patch(
                "/api/v1/devices/twin-solo/twin", content=f'{{"report_interval_s": {i % 600 + 1}}}'
            )
            durations.append(time.perf_counter() - started)
            assert response.json()["published_version"] == response.json()["version"], response.text
        durations.sort()
        print(
            f"device PATCH with retained publish: p50 {statistics.median(durations) * 1000:.1f} ms,"
            f" p99 {durations[int(len(durations) * 0.99) - 1] * 1000:.1f} ms over {args.patches}"
        )
        async with aiomqtt.Client(
            address.host, address.port, identifier="bench-twin", max_queued_incoming_messages=0
        ) as sub:
            await sub.subscribe("fleet/v1/+/config", qos=1)
            await asyncio.sleep(0.5)  # the retained solo document arrives first; counted out below
            started = time.perf_counter()
            response = await client.patch("/api/v1/groups/bench/twin", content=b'{"report_interval_s": 30}')
            assert response.status_code == 200, response.text
            seen: set[str] = set()
            async for message in sub.messages:
                if message.topic.value.startswith("fleet/v1/twin-0"):
                    seen.add(message.topic.value)
                if len(seen) == args.devices:
                    break
            received_s = time.perf_counter() - started
        print(
            f"group of {args.devices} devices: every member's document received {received_s:.2f} s after the PATCH"
            f" ({args.devices / received_s:.0f} devices/s)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--devices", type=int, default=2000)
    parser.add_argument("--patches", type=int, default=200)
    args = parser.parse_args()
    started: list[ServerProcess] = []
    with tempfile.TemporaryDirectory(prefix="bench-twin-") as base:
        Path(base).chmod(0o755)  # the servers drop to their own users, who must enter it
        try:
            mosquitto, redis_server, postgres = start_servers(Path(base), started)
            progress(f"{args.devices} devices in one group; {args.patches} single-device patches")
            asyncio.run(bench(args, mosquitto.url, redis_server.url, postgres.url))
        finally:
            for server in reversed(started):
                server.stop()


if __name__ == "__main__":
    main()
