"""Live connections end when their credential does: token expiry, a revoked key, a deleted or lowered account.

The API re-checks every `live_auth_check_s`, set short here; every wait is bounded by the live client's
generous timeout, so the tests assert what happens, not how fast.
"""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

import httpx
import psycopg
import pytest
from websockets.asyncio.client import ClientConnection
from websockets.exceptions import ConnectionClosed

from api.auth import TOKEN_ISSUER, build_auth
from api.live.watch import CLOSE_CREDENTIAL_ENDED, CLOSE_ROLE_LOWERED
from config import Settings, load_settings
from tests.integration.api.conftest import ADMIN_NAME, TEST_JWT_SECRET, add_account, log_in
from tests.integration.api.live_client import TIMEOUT_S, live_client, request

pytestmark = pytest.mark.integration

CHECK_S = "0.2"
SHORT_TOKEN_S = 2


@pytest.fixture
def api_settings(redis_url: str, database_url: str) -> Settings:
    """The tests' API, re-checking live credentials every 0.2 s."""
    return load_settings(
        {
            "FLEETBRIDGE_REDIS_URL": redis_url,
            "FLEETBRIDGE_DATABASE_URL": database_url,
            "FLEETBRIDGE_API_JWT_SECRET": TEST_JWT_SECRET,
            "FLEETBRIDGE_API_LIVE_AUTH_CHECK_S": CHECK_S,
        }
    )


def short_token(settings: Settings, username: str, role: str, lifetime_s: float = SHORT_TOKEN_S) -> str:
    """A token as the login route issues, but valid for `lifetime_s` only."""
    return build_auth(settings.api).create_token(
        identifier=username, token_expiration=timedelta(seconds=lifetime_s), token_issuer=TOKEN_ISSUER, role=role
    )


async def closed_with(ws: ClientConnection) -> tuple[int | None, str | None]:
    """Read (heartbeats, anything) until the server closes the connection; its close code and reason."""
    async with asyncio.timeout(TIMEOUT_S):
        try:
            while True:
                await ws.recv()
        except ConnectionClosed:
            pass
    return ws.close_code, ws.close_reason


async def make_key(http: httpx.AsyncClient) -> dict[str, Any]:
    response = await http.post("/api/v1/api-keys", json={"name": "watched"})
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_live_connection_closes_when_its_token_expires(
    api_url: str, api_settings: Settings, database_url: str
) -> None:
    await add_account(database_url, "nina", "viewer")

    async with live_client(api_url, short_token(api_settings, "nina", "viewer")) as ws:
        await request(ws, devices=["truck-0001"])
        code, reason = await closed_with(ws)

    assert code == CLOSE_CREDENTIAL_ENDED
    assert reason is not None
    assert "expired" in reason


async def test_auth_message_with_a_fresh_token_keeps_the_connection_open(
    api_url: str, api_settings: Settings, anonymous: httpx.AsyncClient, database_url: str
) -> None:
    await add_account(database_url, "nina", "viewer")
    fresh = await log_in(anonymous, "nina")

    async with live_client(api_url, short_token(api_settings, "nina", "viewer")) as ws:
        replies = await request(ws, "auth", token=fresh)
        # Past the first token's expiry, and several checks later, the connection still serves requests.
        await asyncio.sleep(SHORT_TOKEN_S + 1)
        acknowledged = await request(ws, devices=["truck-0001"])

    assert [reply["type"] for reply in replies] == ["auth"]
    assert replies[0]["expires_at"].endswith("Z")
    assert acknowledged[-1]["type"] == "subscribed"


async def test_auth_message_refuses_another_accounts_token_and_a_forged_one(
    api_url: str, api_settings: Settings, database_url: str
) -> None:
    await add_account(database_url, "nina", "viewer")
    others = build_auth(api_settings.api).create_token(identifier="omar", token_issuer=TOKEN_ISSUER, role="admin")

    async with live_client(api_url, short_token(api_settings, "nina", "viewer")) as ws:
        other = await request(ws, "auth", token=others)
        forged = await request(ws, "auth", token=others[:-4] + "AAAA")
        code, _ = await closed_with(ws)

    assert other == [{"type": "error", "message": "the token is for another account; reconnect to change accounts"}]
    assert forged == [{"type": "error", "message": "token refused: invalid or expired"}]
    assert code == CLOSE_CREDENTIAL_ENDED  # neither extended the connection


async def test_live_connection_closes_when_its_api_key_is_revoked(api_url: str, http: httpx.AsyncClient) -> None:
    key = await make_key(http)

    async with live_client(api_url, key["key"]) as ws:
        await request(ws, devices=["truck-0001"])
        assert (await http.delete(f"/api/v1/api-keys/{key['id']}")).status_code == 204
        code, reason = await closed_with(ws)

    assert (code, reason) == (CLOSE_CREDENTIAL_ENDED, "API key revoked")


async def test_live_connection_closes_when_its_account_is_deleted(
    api_url: str, admin_token: str, database_url: str
) -> None:
    async with live_client(api_url, admin_token) as ws:
        await request(ws, devices=["truck-0001"])
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute("DELETE FROM users WHERE username = %s", (ADMIN_NAME,))
        code, reason = await closed_with(ws)

    assert (code, reason) == (CLOSE_CREDENTIAL_ENDED, "account deleted")


async def test_live_connection_closes_when_its_account_is_lowered_to_a_lesser_role(
    api_url: str, admin_token: str, database_url: str
) -> None:
    async with live_client(api_url, admin_token) as ws:
        await request(ws, devices=["truck-0001"])
        async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
            await conn.execute("UPDATE users SET role = 'viewer' WHERE username = %s", (ADMIN_NAME,))
        code, reason = await closed_with(ws)

    assert code == CLOSE_ROLE_LOWERED
    assert reason is not None
    assert "viewer" in reason


async def test_live_connection_stays_open_while_its_credential_holds(api_url: str, admin_token: str) -> None:
    async with live_client(api_url, admin_token) as ws:
        await request(ws, devices=["truck-0001"])
        await asyncio.sleep(1)  # five checks
        acknowledged = await request(ws, devices=["truck-0002"])

    assert acknowledged[-1]["type"] == "subscribed"


async def test_waiting_long_poll_answers_401_when_its_api_key_is_revoked(http: httpx.AsyncClient) -> None:
    key = await make_key(http)
    poller = asyncio.create_task(http.get("/api/v1/live", params={"wait": 20}, headers={"X-API-Key": key["key"]}))
    await asyncio.sleep(0.5)  # the poll is waiting: nothing is published
    assert (await http.delete(f"/api/v1/api-keys/{key['id']}")).status_code == 204

    async with asyncio.timeout(TIMEOUT_S):
        answer = await poller

    assert answer.status_code == 401
    assert answer.json()["detail"] == "API key revoked"
