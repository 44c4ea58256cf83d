"""Server errors tell the caller a correlation id, never what the driver said (hosts, ports, user names)."""

from __future__ import annotations

import logging
import socket

import httpx
import pytest

from api.server import running
from tests.integration.api.conftest import mint_token, settings_for

pytestmark = pytest.mark.integration

# A user name that must never reach a caller: it is only in the database URL.
SECRET_USER = "fleet_db_owner_x7"


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def assert_generic(response: httpx.Response, *secrets: str) -> str:
    """The answer is a problem with a correlation id (body and header) and none of `secrets`; returns the id."""
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    correlation = body["correlation_id"]
    assert correlation
    assert response.headers["X-Request-Id"] == correlation
    for secret in (*secrets, "Error 111", "Connection refused", "connecting to"):
        assert secret not in response.text
    return str(correlation)


async def test_sign_in_with_redis_down_answers_a_generic_503_and_logs_the_cause(
    database_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    port = closed_port()
    broken = settings_for(f"redis://127.0.0.1:{port}/0", database_url)

    with caplog.at_level(logging.WARNING, logger="api"):
        async with running(broken) as url, httpx.AsyncClient(base_url=url, timeout=10) as anonymous:
            response = await anonymous.post("/api/v1/auth/token", data={"username": "nina", "password": "x" * 12})

    assert response.status_code == 503
    assert response.headers["Retry-After"]
    correlation = assert_generic(response, str(port), "127.0.0.1")
    assert "Redis" in response.json()["detail"]
    logged = [record.getMessage() for record in caplog.records if correlation in record.getMessage()]
    assert logged, "the cause is logged under the correlation id"
    assert any(str(port) in line for line in logged)


async def test_database_down_answers_generic_problems_and_readiness_hides_the_driver_text(redis_url: str) -> None:
    port = closed_port()
    broken = settings_for(redis_url, f"postgresql://{SECRET_USER}@127.0.0.1:{port}/fleet")
    headers = {"Authorization": f"Bearer {mint_token(broken, 'admin', 'admin')}"}

    async with running(broken) as url, httpx.AsyncClient(base_url=url, timeout=15, headers=headers) as client:
        devices = await client.get("/api/v1/devices")
        ready = await client.get("/readyz")

    assert devices.status_code == 503
    assert_generic(devices, SECRET_USER, str(port))
    assert ready.status_code == 503
    assert ready.json()["checks"]["postgres"]["ok"] is False
    for secret in (SECRET_USER, str(port), "127.0.0.1"):
        assert secret not in ready.text


async def test_a_passed_request_id_is_kept(database_url: str) -> None:
    broken = settings_for(f"redis://127.0.0.1:{closed_port()}/0", database_url)
    headers = {"X-Request-Id": "lb-3f2a9c1e-0007"}

    async with running(broken) as url, httpx.AsyncClient(base_url=url, timeout=10, headers=headers) as anonymous:
        response = await anonymous.post("/api/v1/auth/token", data={"username": "nina", "password": "x" * 12})

    assert response.status_code == 503
    assert response.json()["correlation_id"] == "lb-3f2a9c1e-0007"
