"""Renewing an operator token (`POST /api/v1/auth/refresh`): the account is read again, the session has an end."""

from __future__ import annotations

import asyncio
import time

import httpx
import jwt
import psycopg
import pytest

from api.accounts.roles import Role
from api.auth import TokenIssuer, build_auth
from api.server import running
from config import Settings
from tests.integration.api.conftest import TEST_JWT_SECRET, TEST_PASSWORD, add_account, log_in, mint_token
from tests.integration.api.test_api_accounts import with_api

pytestmark = pytest.mark.integration

REFRESH_URL = "/api/v1/auth/refresh"


def claims(token: str) -> dict[str, object]:
    decoded: dict[str, object] = jwt.decode(token, TEST_JWT_SECRET, algorithms=["HS256"], issuer="fleetbridge")
    return decoded


async def renew(client: httpx.AsyncClient, token: str) -> httpx.Response:
    return await client.post(REFRESH_URL, headers={"Authorization": f"Bearer {token}"})


async def test_refresh_gives_a_new_token_of_the_same_session_that_works(
    api_settings: Settings, database_url: str
) -> None:
    await add_account(database_url, "olga", "operator")
    async with (
        running(with_api(api_settings, token_ttl_s=60, session_max_s=3600)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        old = await log_in(client, "olga")
        await asyncio.sleep(1.1)  # a later second: the new token's claims differ from the old one's
        response = await renew(client, old)
        assert response.status_code == 200, response.text
        assert response.headers["cache-control"] == "no-store"
        body = response.json()
        assert (body["token_type"], body["expires_in"], body["role"]) == ("bearer", 60, "operator")
        devices = await client.get("/api/v1/devices", headers={"Authorization": f"Bearer {body['access_token']}"})
        assert devices.status_code == 200

    first, second = claims(old), claims(body["access_token"])
    assert (second["sub"], second["role"]) == ("olga", "operator")
    assert first["session_exp"] == second["session_exp"]
    assert first["session_exp"] == first["iat"] + 3600  # type: ignore[operator]
    assert second["exp"] > first["exp"]  # type: ignore[operator]


async def test_no_token_outlives_its_session(api_settings: Settings, database_url: str) -> None:
    await add_account(database_url, "olga", "operator")
    async with (
        running(with_api(api_settings, token_ttl_s=60, session_max_s=40)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        login = await client.post("/api/v1/auth/token", data={"username": "olga", "password": TEST_PASSWORD})
        token = login.json()["access_token"]
        renewed = (await renew(client, token)).json()
        ending = mint_like(api_settings, "olga", session_exp=int(time.time()) + 2)
        refused = await renew(client, ending)

    assert claims(token)["exp"] == claims(token)["session_exp"]  # 40 s: the session's end, not the 60 s TTL
    assert login.json()["expires_in"] == 40
    assert claims(renewed["access_token"])["exp"] == claims(token)["session_exp"]
    assert renewed["expires_in"] <= 40
    assert refused.status_code == 401
    assert refused.json()["detail"] == "the session is over: log in again"


def mint_like(settings: Settings, username: str, session_exp: int) -> str:
    return TokenIssuer(build_auth(settings.api)).issue(username, Role.OPERATOR, session_exp=session_exp)


@pytest.mark.parametrize(
    ("change", "detail"),
    [
        ("DELETE FROM users WHERE username = 'olga'", "the account no longer exists or is disabled"),
        ("UPDATE users SET disabled = true WHERE username = 'olga'", "the account no longer exists or is disabled"),
        ("UPDATE users SET role = 'viewer' WHERE username = 'olga'", "the account's role is now viewer: log in again"),
    ],
    ids=["deleted", "disabled", "downgraded"],
)
async def test_refresh_refuses_an_account_deleted_disabled_or_downgraded_since_login(
    anonymous: httpx.AsyncClient, database_url: str, change: str, detail: str
) -> None:
    await add_account(database_url, "olga", "operator")
    token = await log_in(anonymous, "olga")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(change)

    response = await renew(anonymous, token)

    assert response.status_code == 401
    assert response.headers["content-type"] == "application/problem+json"
    assert response.json()["detail"] == detail
    assert "access_token" not in response.text


async def test_refresh_refuses_tokens_without_a_session_bad_tokens_and_api_keys(
    api_settings: Settings, anonymous: httpx.AsyncClient, http: httpx.AsyncClient, database_url: str
) -> None:
    await add_account(database_url, "olga", "operator")
    unsigned = jwt.encode({"sub": "olga", "role": "operator", "exp": time.time() + 60}, "x" * 32, algorithm="HS256")
    legacy = jwt.encode(  # signed right, but from before tokens carried their session's end
        {
            "sub": "olga",
            "role": "operator",
            "exp": int(time.time()) + 60,
            "iat": int(time.time()),
            "iss": "fleetbridge",
        },
        TEST_JWT_SECRET,
        algorithm="HS256",
    )
    key = (await http.post("/api/v1/api-keys", json={"name": "acme"})).json()["key"]

    assert (await renew(anonymous, unsigned)).status_code == 401
    assert (await anonymous.post(REFRESH_URL)).status_code == 401
    assert (await renew(anonymous, legacy)).json()["detail"] == "the session is over: log in again"
    assert (await anonymous.post(REFRESH_URL, headers={"X-API-Key": key})).status_code == 403
    assert (await renew(anonymous, mint_token(api_settings, "olga", "operator"))).status_code == 200
