"""Slow track downloads and waiting long polls take nothing the latest-state routes need.

Twenty clients download a large track export (CSV, GPX and GeoJSON) and read it slowly (a small receive buffer, a kilobyte at
a time), and two hundred long polls wait for an update, all at once; meanwhile latest-state requests
(one device's state with an API key, whose check reads PostgreSQL, and the fleet state, which reads the
registry) must succeed. Then one live update answers every long poll.
"""

from __future__ import annotations

import asyncio
import socket
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from urllib.parse import urlencode, urlsplit

import httpx
import psycopg
import pytest
import redis.asyncio as aioredis

from api.server import running
from config import Settings, load_settings
from models.state import encode_field, state_key
from tests.integration.api.conftest import TEST_JWT_SECRET, mint_token, settings_for
from tests.integration.api.live_client import TS_MS, publish_fuel

pytestmark = pytest.mark.integration

DEVICE = "slow-1"
# Over ten megabytes per export: more than the socket buffers between client and server hold (the
# server's send buffer grows to 4 MiB here), so no export can finish while its client reads slowly.
TRACK_ROWS = 200_000
SLOW_DOWNLOADS = 20
WAITING_POLLS = 200
STATE_REQUESTS = 20
CLIENT_RCVBUF_BYTES = 4096
SLOW_READ_BYTES = 1024
SLOW_READ_PAUSE_S = 0.1
TIMEOUT_S = 30  # generous: the machine running the suite may be busy


@dataclass
class RawClient:
    """An HTTP/1.1 exchange on a socket of its own, read by hand."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    @classmethod
    async def send(cls, base_url: str, target: str, headers: dict[str, str], *, rcvbuf: int | None = None) -> RawClient:
        parts = urlsplit(base_url)
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        if rcvbuf is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, rcvbuf)  # before connecting: sets the window
        sock.setblocking(False)
        await asyncio.get_running_loop().sock_connect(sock, (parts.hostname, parts.port))
        reader, writer = await asyncio.open_connection(sock=sock)
        lines = [f"GET {target} HTTP/1.1", f"Host: {parts.netloc}", "Connection: close"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        writer.write(("\r\n".join(lines) + "\r\n\r\n").encode())
        await writer.drain()
        return cls(reader, writer)

    async def status(self) -> int:
        line = await self.reader.readline()
        return int(line.split()[1])

    async def answer(self) -> tuple[int, bytes]:
        """Status and body of a whole (non-chunked) answer."""
        status = await self.status()
        rest = await self.reader.read()
        return status, rest.partition(b"\r\n\r\n")[2]

    async def read_slowly(self) -> None:
        """A kilobyte, a pause, and again, until the answer ends."""
        while True:
            if not await self.reader.read(SLOW_READ_BYTES):
                return
            await asyncio.sleep(SLOW_READ_PAUSE_S)

    def close(self) -> None:
        self.writer.close()


async def insert_track(database_url: str, now: datetime) -> tuple[datetime, datetime]:
    start = now - timedelta(seconds=TRACK_ROWS + 60)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO telemetry (device_id, ts, received_at, seq, lat, lon, speed, fuel)"
            " SELECT %(device)s, %(start)s + n * interval '1 second', now(), n, 52 + n / 1e6, 13 + n / 1e6, 40, 50"
            " FROM generate_series(0, %(rows)s - 1) AS n",
            {"device": DEVICE, "start": start, "rows": TRACK_ROWS},
        )
        await conn.execute("INSERT INTO devices (id) VALUES (%s) ON CONFLICT DO NOTHING", (DEVICE,))
    return start, start + timedelta(seconds=TRACK_ROWS)


@pytest.fixture
def api_settings(redis_url: str, database_url: str) -> Settings:
    return settings_for(redis_url, database_url)


async def test_slow_exports_and_waiting_long_polls_leave_latest_state_answering(
    api_settings: Settings, http: httpx.AsyncClient, database_url: str, redis_client: aioredis.Redis
) -> None:
    base_url = str(http.base_url).rstrip("/")
    start, end = await insert_track(database_url, datetime.now(UTC))
    await redis_client.hset(state_key(DEVICE), mapping={"m.fuel": encode_field(TS_MS, 0, 1, b"50.0")})
    created = await http.post("/api/v1/api-keys", json={"name": "reader"})
    key_headers = {"X-API-Key": created.json()["key"]}
    admin = {"Authorization": str(http.headers["Authorization"])}
    marker = await publish_fuel(redis_client, "other", 1, 1.0)

    downloads: list[RawClient] = []
    readers: list[asyncio.Task[None]] = []
    polls: list[RawClient] = []
    try:
        for n in range(SLOW_DOWNLOADS):
            file_format = ("csv", "gpx", "geojson")[n % 3]
            window = {"format": file_format, "from": start.isoformat(), "to": end.isoformat()}
            target = f"/api/v1/devices/{DEVICE}/track?{urlencode(window)}"
            downloads.append(await RawClient.send(base_url, target, admin, rcvbuf=CLIENT_RCVBUF_BYTES))
        async with asyncio.timeout(TIMEOUT_S):
            statuses = await asyncio.gather(*(download.status() for download in downloads))
        assert statuses == [200] * SLOW_DOWNLOADS
        readers = [asyncio.create_task(download.read_slowly()) for download in downloads]
        target = f"/api/v1/live?{urlencode({'since': marker, 'devices': DEVICE, 'wait': 25})}"
        polls = list(
            await asyncio.gather(*(RawClient.send(base_url, target, key_headers) for _ in range(WAITING_POLLS)))
        )

        async def device_state() -> httpx.Response:
            return await http.get(f"/api/v1/devices/{DEVICE}/state", headers=key_headers)

        async def fleet_state() -> httpx.Response:
            return await http.get("/api/v1/state", params={"ids": DEVICE})

        async with asyncio.timeout(TIMEOUT_S):
            answers = await asyncio.gather(
                *(device_state() for _ in range(STATE_REQUESTS)), *(fleet_state() for _ in range(STATE_REQUESTS))
            )

        assert [answer.status_code for answer in answers] == [200] * (2 * STATE_REQUESTS), answers[0].text
        assert answers[0].json()["metrics"]["fuel"]["value"] == 50.0
        assert [item["device_id"] for item in answers[-1].json()["items"]] == [DEVICE]
        assert not any(task.done() for task in readers), "every download is still under way"

        update = await publish_fuel(redis_client, DEVICE, 2, 49.5)
        async with asyncio.timeout(TIMEOUT_S):
            polled = await asyncio.gather(*(poll.answer() for poll in polls))
        assert [status for status, _ in polled] == [200] * WAITING_POLLS, {body for _, body in polled}
        assert all(update.encode() in body for _, body in polled)
    finally:
        for task in readers:
            task.cancel()
        for client in (*downloads, *polls):
            client.close()
        await asyncio.gather(*readers, return_exceptions=True)


async def test_export_answers_503_with_retry_after_when_no_export_connection_comes(redis_url: str) -> None:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    broken = load_settings(
        {
            "FLEETBRIDGE_REDIS_URL": redis_url,
            "FLEETBRIDGE_DATABASE_URL": f"postgresql://postgres@127.0.0.1:{port}/fleet",
            "FLEETBRIDGE_API_JWT_SECRET": TEST_JWT_SECRET,
            "FLEETBRIDGE_API_EXPORT_WAIT_S": "0.5",
        }
    )
    headers = {"Authorization": f"Bearer {mint_token(broken, 'admin', 'admin')}"}

    async with running(broken) as url, httpx.AsyncClient(base_url=url, timeout=TIMEOUT_S, headers=headers) as client:
        response = await client.get(f"/api/v1/devices/{DEVICE}/track", params={"format": "geojson"})

    # Answered before the download starts, not a download cut short.
    assert response.status_code == 503
    assert response.headers["Retry-After"]
    assert "export connection" in response.json()["detail"]
