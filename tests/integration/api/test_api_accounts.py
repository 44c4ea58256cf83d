"""Logging in, login throttling, and users and API keys managed by admins, against real servers."""

from __future__ import annotations

import dataclasses
import hashlib

import httpx
import jwt
import psycopg
import pytest

from api.server import running
from config import ApiSettings, Settings
from tests.integration.api.conftest import TEST_JWT_SECRET, TEST_PASSWORD, add_account, log_in

pytestmark = pytest.mark.integration

TOKEN_URL = "/api/v1/auth/token"


def with_api(settings: Settings, **changes: object) -> Settings:
    return dataclasses.replace(settings, api=dataclasses.replace(settings.api, **changes))  # type: ignore[arg-type]


async def test_login_with_a_form_gives_a_short_lived_bearer_token_with_the_role(
    anonymous: httpx.AsyncClient, database_url: str
) -> None:
    await add_account(database_url, "olga", "operator")

    response = await anonymous.post(TOKEN_URL, data={"username": "olga", "password": TEST_PASSWORD})

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    body = response.json()
    assert (body["token_type"], body["expires_in"], body["role"]) == ("bearer", ApiSettings().token_ttl_s, "operator")
    claims = jwt.decode(body["access_token"], TEST_JWT_SECRET, algorithms=["HS256"], issuer="fleetbridge")
    assert (claims["sub"], claims["role"]) == ("olga", "operator")
    assert claims["exp"] - claims["iat"] == 900
    devices = await anonymous.get("/api/v1/devices", headers={"Authorization": f"Bearer {body['access_token']}"})
    assert devices.status_code == 200


async def test_login_takes_json_too_and_the_token_lifetime_is_configurable(
    api_settings: Settings, database_url: str
) -> None:
    await add_account(database_url, "vera", "viewer")

    async with (
        running(with_api(api_settings, token_ttl_s=60)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        response = await client.post(TOKEN_URL, json={"username": "vera", "password": TEST_PASSWORD})

    assert response.status_code == 200, response.text
    assert response.json()["expires_in"] == 60
    claims = jwt.decode(response.json()["access_token"], TEST_JWT_SECRET, algorithms=["HS256"], issuer="fleetbridge")
    assert claims["exp"] - claims["iat"] == 60


async def test_login_refuses_a_wrong_password_an_unknown_user_and_a_disabled_one_alike(
    anonymous: httpx.AsyncClient, database_url: str
) -> None:
    await add_account(database_url, "olga", "operator")
    await add_account(database_url, "gone", "admin")
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute("UPDATE users SET disabled = true WHERE username = 'gone'")

    answers = [
        await anonymous.post(TOKEN_URL, data={"username": name, "password": password})
        for name, password in (("olga", "wrong password!"), ("nobody", TEST_PASSWORD), ("gone", TEST_PASSWORD))
    ]

    for response in answers:
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["detail"] == "invalid username or password"
        assert "access_token" not in response.text


@pytest.mark.parametrize(
    ("content", "reason"),
    [
        ({"data": {"username": "olga"}}, "password"),
        ({"json": {"password": "x"}}, "username"),
        ({"content": b"username=olga", "headers": {"content-type": "text/plain"}}, "form"),
        ({"content": b"{not json", "headers": {"content-type": "application/json"}}, "needed"),
        ({"data": {"username": "olga", "password": "x", "grant_type": "client_credentials"}}, "grant_type"),
    ],
)
async def test_login_rejects_a_malformed_request_as_400(
    anonymous: httpx.AsyncClient, content: dict[str, object], reason: str
) -> None:
    response = await anonymous.post(TOKEN_URL, **content)  # type: ignore[arg-type]

    assert response.status_code == 400
    assert reason in response.json()["detail"]


async def test_login_throttles_failures_per_username_with_429_and_retry_after(
    api_settings: Settings, database_url: str
) -> None:
    await add_account(database_url, "olga", "operator")
    async with (
        running(with_api(api_settings, login_attempts_per_minute=3)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        failures = [
            (await client.post(TOKEN_URL, data={"username": "olga", "password": "guess number one"})).status_code
            for _ in range(3)
        ]
        # Now even the right password waits: the attacker cannot tell when they guessed it.
        throttled = await client.post(TOKEN_URL, data={"username": "olga", "password": TEST_PASSWORD})

    assert failures == [401, 401, 401]
    assert throttled.status_code == 429
    assert throttled.headers["content-type"] == "application/problem+json"
    assert 1 <= int(throttled.headers["retry-after"]) <= 60


async def test_login_throttles_failures_per_client_address_across_instances(
    api_settings: Settings, database_url: str
) -> None:
    await add_account(database_url, "olga", "operator")
    limited = with_api(api_settings, login_attempts_per_minute=3)
    async with (
        running(limited) as first_url,
        running(limited) as second_url,
        httpx.AsyncClient(base_url=first_url, timeout=10) as first,
        httpx.AsyncClient(base_url=second_url, timeout=10) as second,
    ):
        statuses = [
            (await client.post(TOKEN_URL, data={"username": f"user{n}", "password": "guess"})).status_code
            for n, client in enumerate([first, second, first, second])
        ]

    # Three different names from one address, over two instances sharing Redis: the fourth waits.
    assert statuses == [401, 401, 401, 429]


async def test_login_successes_do_not_count_against_the_limit(api_settings: Settings, database_url: str) -> None:
    await add_account(database_url, "olga", "operator")
    async with (
        running(with_api(api_settings, login_attempts_per_minute=2)) as url,
        httpx.AsyncClient(base_url=url, timeout=10) as client,
    ):
        for _ in range(5):
            await log_in(client, "olga")


async def test_admin_adds_users_whose_passwords_are_stored_as_argon2id_hashes_only(
    http: httpx.AsyncClient, anonymous: httpx.AsyncClient, database_url: str
) -> None:
    password = "a passphrase nobody guesses"

    created = await http.post("/api/v1/users", json={"username": "nina", "role": "viewer", "password": password})
    listed = await http.get("/api/v1/users")
    token = await log_in(anonymous, "nina", password)
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute("SELECT password_hash FROM users WHERE username = 'nina'")
        row = await cursor.fetchone()

    assert created.status_code == 201
    assert created.json()["username"] == "nina"
    assert "password" not in created.text
    assert [(user["username"], user["role"]) for user in listed.json()] == [("admin", "admin"), ("nina", "viewer")]
    assert "hash" not in listed.text
    assert token
    assert row is not None
    stored: str = row[0]
    assert stored.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert password not in stored
    assert password.encode().hex() not in stored


@pytest.mark.parametrize(
    ("body", "status"),
    [
        ({"username": "admin", "role": "viewer", "password": "a long enough password"}, 409),
        ({"username": "short", "role": "viewer", "password": "too short"}, 400),
        ({"username": "bad name", "role": "viewer", "password": "a long enough password"}, 400),
        ({"username": "rooty", "role": "root", "password": "a long enough password"}, 400),
    ],
)
async def test_admin_cannot_add_a_taken_name_a_weak_password_or_an_unknown_role(
    http: httpx.AsyncClient, body: dict[str, str], status: int
) -> None:
    response = await http.post("/api/v1/users", json=body)

    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"


async def test_api_key_is_shown_once_stored_as_a_digest_and_revocable(
    http: httpx.AsyncClient, anonymous: httpx.AsyncClient, database_url: str
) -> None:
    created = await http.post("/api/v1/api-keys", json={"name": "acme", "group": "north"})
    body = created.json()
    key = body["key"]
    works = await anonymous.get("/api/v1/devices", headers={"X-API-Key": key})
    listed = await http.get("/api/v1/api-keys")
    async with await psycopg.AsyncConnection.connect(database_url) as conn:
        cursor = await conn.execute("SELECT key_sha256, key_prefix FROM api_keys WHERE id = %s", (body["id"],))
        row = await cursor.fetchone()
    revoked = await http.delete(f"/api/v1/api-keys/{body['id']}")
    after = await anonymous.get("/api/v1/devices", headers={"X-API-Key": key})
    again = await http.delete(f"/api/v1/api-keys/{body['id']}")
    unknown = await http.delete("/api/v1/api-keys/999999")

    assert created.status_code == 201
    assert created.headers["cache-control"] == "no-store"
    assert key.startswith("fbk_")
    assert len(key) == 47
    assert (body["name"], body["group"], body["prefix"]) == ("acme", "north", key[:12])
    assert works.status_code == 200
    assert key not in listed.text
    assert [(item["name"], item["prefix"], item["revoked_at"]) for item in listed.json()] == [("acme", key[:12], None)]
    assert row is not None
    assert bytes(row[0]) == hashlib.sha256(key.encode()).digest()
    assert row[1] == key[:12]
    assert revoked.status_code == 204
    assert after.status_code == 401
    assert again.status_code == 204
    assert unknown.status_code == 404
