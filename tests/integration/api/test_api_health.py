"""Liveness, readiness against real and unreachable backends, the schema and the operator page."""

from __future__ import annotations

import re
import socket

import httpx
import pytest

from api.server import running
from config import Settings
from tests.integration.api.conftest import mint_token, settings_for

pytestmark = pytest.mark.integration


def closed_port() -> int:
    """A loopback port nothing listens on (bound, then released)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


async def test_healthz_answers(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/healthz")

    assert response.status_code == 200
    assert response.json() == {"status": "ok"}


async def test_readyz_is_ready_when_both_backends_answer(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/readyz")

    assert response.status_code == 200, response.text
    body = response.json()
    assert body["status"] == "ready"
    assert body["checks"]["redis"]["ok"] is True
    assert body["checks"]["postgres"]["ok"] is True


async def test_readyz_names_the_backend_that_does_not_answer(
    http: httpx.AsyncClient, redis_url: str, database_url: str
) -> None:
    # A second instance whose Redis is gone, beside the healthy first one; the same token secret, so the
    # first instance's token holds there too.
    broken = settings_for(f"redis://127.0.0.1:{closed_port()}/0", database_url)

    async with running(broken) as url, httpx.AsyncClient(base_url=url, timeout=10, headers=http.headers) as client:
        response = await client.get("/readyz")
        state = await client.get("/api/v1/devices/truck-0001/state")

    assert response.status_code == 503
    body = response.json()
    assert body["status"] == "unavailable"
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["redis"]["error"]
    assert body["checks"]["postgres"]["ok"] is True
    assert state.status_code == 503
    assert "Redis" in state.json()["detail"]
    assert (await http.get("/readyz")).status_code == 200


async def test_readyz_reports_an_unreachable_database(redis_url: str) -> None:
    broken = settings_for(redis_url, f"postgresql://postgres@127.0.0.1:{closed_port()}/fleet")
    headers = {"Authorization": f"Bearer {mint_token(broken, 'admin', 'admin')}"}

    async with running(broken) as url, httpx.AsyncClient(base_url=url, timeout=10, headers=headers) as client:
        response = await client.get("/readyz")
        devices = await client.get("/api/v1/devices")

    assert response.status_code == 503
    checks = response.json()["checks"]
    assert checks["redis"]["ok"] is True
    assert checks["postgres"]["ok"] is False
    assert devices.status_code == 503
    assert devices.headers["content-type"] == "application/problem+json"


async def test_openapi_schema_is_public_json_without_cdn_pages(anonymous: httpx.AsyncClient) -> None:
    schema = await anonymous.get("/schema/openapi.json")
    root = await anonymous.get("/schema")

    assert schema.status_code == 200
    paths = schema.json()["paths"]
    assert {"/api/v1/devices", "/api/v1/devices/{device_id}/state", "/api/v1/devices/{device_id}/telemetry"} <= set(
        paths
    )
    assert root.status_code == 200
    assert root.headers["content-type"].startswith("application/vnd.oai.openapi+json")
    assert (await anonymous.get("/schema/swagger")).status_code == 404
    document = schema.json()
    assert document["security"] == [{"OAuth2PasswordBearer": []}, {"ApiKey": []}]
    assert document["components"]["securitySchemes"]["OAuth2PasswordBearer"]["flows"]["password"]["tokenUrl"] == (
        "/api/v1/auth/token"
    )
    assert paths["/api/v1/auth/token"]["post"]["security"] == [{}]


async def test_operator_page_is_served_from_this_server_with_a_strict_csp(anonymous: httpx.AsyncClient) -> None:
    response = await anonymous.get("/")

    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/html")
    assert response.headers["cache-control"] == "no-cache"
    assert "script-src 'self'" in response.headers["content-security-policy"]
    page = response.text
    assert "http://" not in page  # nothing fetched from elsewhere, no CDN
    assert "https://" not in page
    scripts = re.findall(r'<script[^>]* src="([^"]+)"', page)
    assert scripts
    for src in scripts:
        asset = await anonymous.get(src)
        assert asset.status_code == 200, src
        assert asset.headers["cache-control"] == "public, max-age=31536000, immutable"
        assert asset.headers["content-type"].startswith("text/javascript")
    stale = await anonymous.get(scripts[0].replace(scripts[0].split("/")[2], "0" * 16))
    assert stale.status_code == 404  # another build's URL is never answered with this build's bytes


def test_create_app_names_missing_backend_urls() -> None:
    from api.app import create_app
    from config import SettingsError

    with pytest.raises(SettingsError, match="FLEETBRIDGE_REDIS_URL and FLEETBRIDGE_DATABASE_URL"):
        create_app(Settings())


async def test_api_serves_the_asyncapi_document_generated_from_the_payload_types(api_url: str) -> None:
    import httpx

    from models.asyncapi import document

    async with httpx.AsyncClient(base_url=api_url) as client:
        response = await client.get("/asyncapi.json")
    assert response.status_code == 200
    assert response.json() == document()
