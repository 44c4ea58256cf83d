"""Who may call what: every route against every kind of caller, valid or forged, over real HTTP and WebSocket.

One test per caller walks every route and compares the whole table of statuses, so a failure shows
the caller's full row. Then what a group-limited API key sees: its group's devices only, and every
other device exactly as if it did not exist.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import json
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode

import httpx
import jwt
import psycopg
import pytest
import redis.asyncio as aioredis
from websockets.asyncio.client import connect
from websockets.exceptions import InvalidStatus

from api.accounts.services import Refused, create_api_key, revoke_api_key
from api.app import create_app
from api.server import running
from config import Settings
from models.state import LIVE_STREAM_KEY, encode_field, state_key
from tests.integration.api.conftest import TEST_JWT_SECRET, mint_token, settings_for

pytestmark = pytest.mark.integration

NORTH_DEVICE = "truck-n1"
SOUTH_DEVICE = "truck-s1"
SPARE_DEVICE = "truck-spare"  # deleted by the admin's walk
TS_MS = 1_764_000_000_000
WS_TIMEOUT_S = 5
SWITCHING_PROTOCOLS = 101


@dataclass(frozen=True)
class World:
    """One API instance with devices in two groups, and the credentials of every kind of caller."""

    api_url: str
    database_url: str
    settings: Settings
    keys: dict[str, str]
    spare_key_id: int


async def make_key(database_url: str, name: str, group: str | None) -> tuple[int, str]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        created = await create_api_key(conn, name, group)
    assert not isinstance(created, Refused)
    return created.id, created.key


@pytest.fixture
async def world(api_url: str, api_settings: Settings, database_url: str, redis_client: aioredis.Redis) -> World:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        await conn.execute(
            "INSERT INTO devices (id, group_name) VALUES (%s, 'north'), (%s, 'south'), (%s, NULL)",
            (NORTH_DEVICE, SOUTH_DEVICE, SPARE_DEVICE),
        )
        await conn.execute("INSERT INTO device_groups (name) VALUES ('retired')")
    for device_id in (NORTH_DEVICE, SOUTH_DEVICE):
        await redis_client.hset(state_key(device_id), mapping={"m.fuel": encode_field(TS_MS, 0, 1, b"50.0")})
    _, everything = await make_key(database_url, "integrator", None)
    _, north = await make_key(database_url, "north-integrator", "north")
    revoked_id, revoked = await make_key(database_url, "former-integrator", None)
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as conn:
        assert await revoke_api_key(conn, revoked_id)
    spare_id, _ = await make_key(database_url, "spare", None)
    return World(
        api_url=api_url,
        database_url=database_url,
        settings=api_settings,
        keys={"everything": everything, "north": north, "revoked": revoked},
        spare_key_id=spare_id,
    )


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def claims(role: str = "admin", **overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    return {"sub": "someone", "role": role, "iss": "fleetbridge", "iat": now, "exp": now + 600} | overrides


def forge_payload(token: str, **changes: Any) -> str:
    """`token` with its claims changed and its signature kept (as an attacker would try)."""
    header, payload, signature = token.split(".")
    decoded = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    return ".".join([header, b64url(json.dumps(decoded | changes).encode()), signature])


def flip_signature(token: str) -> str:
    header, payload, signature = token.split(".")
    middle = len(signature) // 2
    flipped = "A" if signature[middle] != "A" else "B"
    return ".".join([header, payload, signature[:middle] + flipped + signature[middle + 1 :]])


def unsigned(role: str) -> str:
    header = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{header}.{b64url(json.dumps(claims(role)).encode())}."


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# Each caller: how it authenticates (headers), and the role it acts with when the credentials are valid
# ("key" for integrator keys), or None when they are not.
def callers(world: World) -> dict[str, tuple[dict[str, str], str | None]]:
    def token(role: str) -> str:
        return mint_token(world.settings, f"the-{role}", role)

    return {
        "admin": (bearer(token("admin")), "admin"),
        "operator": (bearer(token("operator")), "operator"),
        "viewer": (bearer(token("viewer")), "viewer"),
        "integrator key": ({"X-API-Key": world.keys["everything"]}, "key"),
        "group-limited key": ({"X-API-Key": world.keys["north"]}, "key"),
        "no credentials": ({}, None),
        "expired token": (bearer(jwt.encode(claims(exp=int(time.time()) - 5), TEST_JWT_SECRET)), None),
        "signature altered": (bearer(flip_signature(token("admin"))), None),
        "role raised in payload": (bearer(forge_payload(token("viewer"), role="admin")), None),
        "alg none": (bearer(unsigned("admin")), None),
        "wrong secret": (bearer(jwt.encode(claims(), "another-secret-that-is-long-enough-0123456789")), None),
        "other issuer": (bearer(jwt.encode(claims(iss="elsewhere"), TEST_JWT_SECRET)), None),
        "unknown role": (bearer(jwt.encode(claims(role="root"), TEST_JWT_SECRET)), None),
        "not a JWT": (bearer("not-a-token"), None),
        "Basic scheme": ({"Authorization": "Basic YWRtaW46YWRtaW4="}, None),
        "revoked key": ({"X-API-Key": world.keys["revoked"]}, None),
        "unknown key": ({"X-API-Key": "fbk_" + "x" * 43}, None),
    }


Request = Callable[[httpx.AsyncClient, World, dict[str, str]], Awaitable[int]]


async def upload_image(client: httpx.AsyncClient, world: World, headers: dict[str, str]) -> int:
    image = uuid.uuid4().bytes
    params = {"kind": "truck", "version": f"v{uuid.uuid4().hex[:8]}", "sha256": hashlib.sha256(image).hexdigest()}
    response = await client.post("/api/v1/firmware", params=params, content=image, headers=headers)
    return response.status_code


def http_route(method: str, path: str, body: Callable[[], Any] | None = None) -> Request:
    async def call(client: httpx.AsyncClient, world: World, headers: dict[str, str]) -> int:
        target = path.format(spare=world.spare_key_id)
        response = await client.request(method, target, headers=headers, json=body() if body else None)
        return response.status_code

    return call


def merge_patch_route(path: str, body: bytes) -> Request:
    """A JSON Merge Patch (RFC 7396) to `path`, against any version (`If-Match: *`)."""

    async def call(client: httpx.AsyncClient, world: World, headers: dict[str, str]) -> int:
        sent = {**headers, "Content-Type": "application/merge-patch+json", "If-Match": "*"}
        response = await client.request("PATCH", path, headers=sent, content=body)
        return response.status_code

    return call


async def live_handshake(client: httpx.AsyncClient, world: World, headers: dict[str, str]) -> int:
    url = world.api_url.replace("http://", "ws://") + "/api/v1/live"
    try:
        async with connect(url, additional_headers=headers, open_timeout=WS_TIMEOUT_S):
            return SWITCHING_PROTOCOLS
    except InvalidStatus as exc:
        return exc.response.status_code


# Route, least role ("public", "viewer" = any valid caller, "operator", "admin"; "device": device
# credentials only), status on success.
ROUTES: dict[str, tuple[Request, str, int]] = {
    "GET /api/v1/devices": (http_route("GET", "/api/v1/devices"), "viewer", 200),
    "POST /api/v1/devices": (
        http_route("POST", "/api/v1/devices", lambda: {"id": f"truck-{uuid.uuid4().hex[:8]}"}),
        "admin",
        201,
    ),
    "GET /api/v1/devices/{id}": (http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}"), "viewer", 200),
    "PATCH /api/v1/devices/{id}": (
        http_route("PATCH", f"/api/v1/devices/{NORTH_DEVICE}", lambda: {"name": "renamed"}),
        "operator",
        200,
    ),
    "POST /api/v1/devices/{id}/secret": (
        http_route("POST", f"/api/v1/devices/{SOUTH_DEVICE}/secret"),
        "admin",
        200,
    ),
    "DELETE /api/v1/devices/{id}": (http_route("DELETE", f"/api/v1/devices/{SPARE_DEVICE}"), "admin", 200),
    "GET /api/v1/devices/{id}/state": (http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}/state"), "viewer", 200),
    "GET /api/v1/devices/{id}/telemetry": (
        http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}/telemetry"),
        "viewer",
        200,
    ),
    "GET /api/v1/devices/{id}/telemetry/gaps": (
        http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}/telemetry/gaps"),
        "viewer",
        200,
    ),
    "GET /api/v1/devices/{id}/rejected": (
        http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}/rejected"),
        "viewer",
        200,
    ),
    "GET /api/v1/devices/{id}/presence": (
        http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}/presence"),
        "viewer",
        200,
    ),
    "GET /api/v1/devices/{id}/events": (
        http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}/events"),
        "viewer",
        200,
    ),
    "GET /api/v1/devices/{id}/trips": (http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}/trips"), "viewer", 200),
    "GET /api/v1/devices/{id}/stops": (http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}/stops"), "viewer", 200),
    "GET /api/v1/devices/{id}/idling": (http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}/idling"), "viewer", 200),
    "GET /api/v1/devices/{id}/summary": (
        http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}/summary?day=2026-03-02"),
        "viewer",
        200,
    ),
    "GET /api/v1/groups/{name}/summary": (
        http_route("GET", "/api/v1/groups/north/summary?day=2026-03-02"),
        "viewer",
        200,
    ),
    "GET /api/v1/devices/{id}/twin": (http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}/twin"), "viewer", 200),
    "PATCH /api/v1/devices/{id}/twin": (
        merge_patch_route(f"/api/v1/devices/{NORTH_DEVICE}/twin", b'{"report_interval_s": 30}'),
        "operator",
        200,
    ),
    "GET /api/v1/groups/{name}/twin": (http_route("GET", "/api/v1/groups/north/twin"), "viewer", 200),
    "PATCH /api/v1/groups/{name}/twin": (
        merge_patch_route("/api/v1/groups/north/twin", b'{"firmware_channel": "beta"}'),
        "operator",
        200,
    ),
    "GET /api/v1/rejected": (http_route("GET", "/api/v1/rejected"), "admin", 200),
    "GET /api/v1/state": (http_route("GET", "/api/v1/state"), "viewer", 200),
    "GET /api/v1/groups": (http_route("GET", "/api/v1/groups"), "viewer", 200),
    "GET /api/v1/groups/{name}": (http_route("GET", "/api/v1/groups/north"), "viewer", 200),
    "PUT /api/v1/groups/{name}": (http_route("PUT", "/api/v1/groups/east", lambda: {"description": "x"}), "admin", 201),
    "DELETE /api/v1/groups/{name}": (http_route("DELETE", "/api/v1/groups/retired"), "admin", 204),
    "GET /api/v1/devices/{id}/telemetry?bucket=": (
        http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}/telemetry?bucket=1m"),
        "viewer",
        200,
    ),
    "GET /api/v1/devices/{id}/telemetry?points=": (
        http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}/telemetry?points=100"),
        "viewer",
        200,
    ),
    "GET /api/v1/devices/{id}/track": (
        http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}/track?format=gpx"),
        "viewer",
        200,
    ),
    "WebSocket /api/v1/live": (live_handshake, "viewer", SWITCHING_PROTOCOLS),
    "GET /api/v1/live (polling)": (http_route("GET", "/api/v1/live?since=0-0"), "viewer", 200),
    "GET /api/v1/users": (http_route("GET", "/api/v1/users"), "admin", 200),
    "POST /api/v1/users": (
        http_route(
            "POST",
            "/api/v1/users",
            lambda: {"username": f"u{uuid.uuid4().hex[:8]}", "role": "viewer", "password": "a long enough password"},
        ),
        "admin",
        201,
    ),
    "GET /api/v1/api-keys": (http_route("GET", "/api/v1/api-keys"), "admin", 200),
    "POST /api/v1/api-keys": (http_route("POST", "/api/v1/api-keys", lambda: {"name": "made"}), "admin", 201),
    "DELETE /api/v1/api-keys/{id}": (http_route("DELETE", "/api/v1/api-keys/{spare}"), "admin", 204),
    # Devices only, with their own MQTT secret (tested in test_api_ingest.py): no operator or key gets in.
    "POST /api/v1/ingest": (
        http_route("POST", "/api/v1/ingest", lambda: {"seq": 1, "ts": "2026-11-25T10:00:00Z"}),
        "device",
        200,
    ),
    "GET /api/v1/rules": (http_route("GET", "/api/v1/rules"), "viewer", 200),
    "POST /api/v1/rules": (
        http_route(
            "POST", "/api/v1/rules", lambda: {"name": "hot", "metric": "engine_temp", "op": ">", "threshold": 110}
        ),
        "operator",
        201,
    ),
    # Authorised callers reach the handler, which finds no such rule or alert.
    "GET /api/v1/rules/{id}": (http_route("GET", "/api/v1/rules/999999"), "viewer", 404),
    "DELETE /api/v1/rules/{id}": (http_route("DELETE", "/api/v1/rules/999999"), "operator", 404),
    "GET /api/v1/alerts": (http_route("GET", "/api/v1/alerts?state=active"), "viewer", 200),
    "GET /api/v1/alerts/{id}": (http_route("GET", "/api/v1/alerts/999999"), "viewer", 404),
    "POST /api/v1/alerts/{id}/acknowledge": (
        http_route("POST", "/api/v1/alerts/999999/acknowledge"),
        "operator",
        404,
    ),
    "POST /api/v1/alerts/{id}/clear": (http_route("POST", "/api/v1/alerts/999999/clear"), "operator", 404),
    "POST /api/v1/alerts/{id}/comments": (
        http_route("POST", "/api/v1/alerts/999999/comments", lambda: {"body": "seen"}),
        "operator",
        404,
    ),
    # A ping to a device with no presence yet: stored, queued (201); dangerous ones are refused by state.
    "POST /api/v1/devices/{id}/commands": (
        http_route("POST", f"/api/v1/devices/{NORTH_DEVICE}/commands", lambda: {"name": "ping"}),
        "operator",
        201,
    ),
    "GET /api/v1/devices/{id}/commands": (
        http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}/commands"),
        "viewer",
        200,
    ),
    "GET /api/v1/commands/{id}": (http_route("GET", f"/api/v1/commands/{uuid.UUID(int=7)}"), "viewer", 404),
    "POST /api/v1/commands/{id}/cancel": (
        http_route("POST", f"/api/v1/commands/{uuid.UUID(int=7)}/cancel"),
        "operator",
        404,
    ),
    "GET /api/v1/command-catalogue": (http_route("GET", "/api/v1/command-catalogue"), "viewer", 200),
    "POST /api/v1/firmware": (upload_image, "admin", 201),
    "GET /api/v1/firmware": (http_route("GET", "/api/v1/firmware"), "viewer", 200),
    "GET /api/v1/firmware/{id}": (http_route("GET", "/api/v1/firmware/999999"), "viewer", 404),
    "DELETE /api/v1/firmware/{id}": (http_route("DELETE", "/api/v1/firmware/999999"), "admin", 404),
    # Devices download with the signed link of their update command, not with credentials: a forged one
    # is refused whoever sends it.
    "GET /api/v1/firmware/{id}/image": (
        http_route("GET", f"/api/v1/firmware/999999/image?token=4102444800.{NORTH_DEVICE}.forged"),
        "public",
        401,
    ),
    "GET /api/v1/devices/{id}/health": (http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}/health"), "viewer", 200),
    "GET /api/v1/groups/{name}/health": (http_route("GET", "/api/v1/groups/north/health"), "viewer", 200),
    "POST /api/v1/maintenance-schedules": (
        http_route(
            "POST", "/api/v1/maintenance-schedules", lambda: {"name": "oil", "basis": "odometer", "every": 15000}
        ),
        "operator",
        201,
    ),
    "GET /api/v1/maintenance-schedules": (http_route("GET", "/api/v1/maintenance-schedules"), "viewer", 200),
    "DELETE /api/v1/maintenance-schedules/{id}": (
        http_route("DELETE", "/api/v1/maintenance-schedules/999999"),
        "operator",
        404,
    ),
    "GET /api/v1/devices/{id}/maintenance": (
        http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}/maintenance"),
        "viewer",
        200,
    ),
    "POST /api/v1/devices/{id}/maintenance": (
        http_route("POST", f"/api/v1/devices/{NORTH_DEVICE}/maintenance", lambda: {"schedule_id": 999999}),
        "operator",
        400,
    ),
    "POST /api/v1/rollouts": (
        http_route("POST", "/api/v1/rollouts", lambda: {"image_id": 999999, "group": "north"}),
        "operator",
        400,
    ),
    "GET /api/v1/rollouts": (http_route("GET", "/api/v1/rollouts"), "viewer", 200),
    "GET /api/v1/rollouts/{id}": (http_route("GET", "/api/v1/rollouts/999999"), "viewer", 404),
    "POST /api/v1/rollouts/{id}/stop": (http_route("POST", "/api/v1/rollouts/999999/stop"), "operator", 404),
    # Authorised callers reach the handler, which finds no such image.
    "POST /api/v1/devices/{id}/firmware-update": (
        http_route("POST", f"/api/v1/devices/{NORTH_DEVICE}/firmware-update", lambda: {"image_id": 999999}),
        "operator",
        400,
    ),
    "GET /api/v1/notification-channels": (http_route("GET", "/api/v1/notification-channels"), "operator", 200),
    "POST /api/v1/notification-channels": (
        http_route(
            "POST",
            "/api/v1/notification-channels",
            lambda: {"name": f"n{uuid.uuid4().hex[:8]}", "kind": "email", "recipients": ["a@b.io"]},
        ),
        "admin",
        201,
    ),
    "DELETE /api/v1/notification-channels/{id}": (
        http_route("DELETE", "/api/v1/notification-channels/999999"),
        "admin",
        404,
    ),
    "GET /api/v1/notifications": (http_route("GET", "/api/v1/notifications?state=dead"), "operator", 200),
    "POST /api/v1/notifications/{id}/retry": (
        http_route("POST", "/api/v1/notifications/999999/retry"),
        "operator",
        409,
    ),
    "GET /api/v1/geofences": (http_route("GET", "/api/v1/geofences"), "viewer", 200),
    "POST /api/v1/geofences": (
        http_route(
            "POST",
            "/api/v1/geofences",
            lambda: {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [8.0, 48.0]},
                "properties": {"name": "depot", "radius_m": 100},
            },
        ),
        "operator",
        201,
    ),
    "GET /api/v1/geofences/{id}": (http_route("GET", "/api/v1/geofences/999999"), "viewer", 404),
    "PUT /api/v1/geofences/{id}": (
        http_route(
            "PUT",
            "/api/v1/geofences/999999",
            lambda: {
                "type": "Feature",
                "geometry": {"type": "Point", "coordinates": [8.0, 48.0]},
                "properties": {"name": "depot", "radius_m": 100},
            },
        ),
        "operator",
        404,
    ),
    "DELETE /api/v1/geofences/{id}": (http_route("DELETE", "/api/v1/geofences/999999"), "operator", 404),
    "GET /api/v1/geofences/{id}/time-inside": (
        http_route("GET", "/api/v1/geofences/999999/time-inside"),
        "viewer",
        404,
    ),
    "GET /api/v1/devices/{id}/geofence-events": (
        http_route("GET", f"/api/v1/devices/{NORTH_DEVICE}/geofence-events"),
        "viewer",
        200,
    ),
    "GET /healthz": (http_route("GET", "/healthz"), "public", 200),
    "GET /readyz": (http_route("GET", "/readyz"), "public", 200),
    "GET / (page shell)": (http_route("GET", "/"), "public", 200),
    "GET /ui/{build}/{path} (the app's files)": (http_route("GET", "/ui/0000000000000000/app/main.js"), "public", 404),
    "GET /schema/openapi.json": (http_route("GET", "/schema/openapi.json"), "public", 200),
    "GET /asyncapi.json": (http_route("GET", "/asyncapi.json"), "public", 200),
}


ROLE_RANKS = {"viewer": 0, "operator": 1, "admin": 2}


def expected(acting_as: str | None, needed: str, success: int) -> int:
    if needed == "public":
        return success
    if acting_as is None or needed == "device":
        return 401
    if needed == "viewer":
        return success
    if acting_as == "key":  # read-only, whatever the route
        return 403
    return success if ROLE_RANKS[acting_as] >= ROLE_RANKS[needed] else 403


CALLERS = [
    "admin",
    "operator",
    "viewer",
    "integrator key",
    "group-limited key",
    "no credentials",
    "expired token",
    "signature altered",
    "role raised in payload",
    "alg none",
    "wrong secret",
    "other issuer",
    "unknown role",
    "not a JWT",
    "Basic scheme",
    "revoked key",
    "unknown key",
]


@pytest.fixture
async def client(world: World) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=world.api_url, timeout=10) as http_client:
        yield http_client


@pytest.mark.parametrize("caller", CALLERS)
async def test_authz_matrix_every_route_answers_each_caller_as_its_role_allows(
    world: World, client: httpx.AsyncClient, caller: str
) -> None:
    headers, acting_as = callers(world)[caller]

    seen = {route: await request(client, world, headers) for route, (request, _, _) in ROUTES.items()}

    assert seen == {route: expected(acting_as, needed, success) for route, (_, needed, success) in ROUTES.items()}


def test_authz_matrix_covers_every_route_of_the_app() -> None:
    # Never contacted: building an app opens nothing until its lifespan starts.
    settings = settings_for("redis://127.0.0.1:1/0", "postgresql://127.0.0.1:1/x")

    app_paths = {route.path for route in create_app(settings).routes}
    covered = {
        "/api/v1/devices",
        "/api/v1/devices/{device_id:str}",
        "/api/v1/devices/{device_id:str}/secret",
        "/api/v1/devices/{device_id:str}/state",
        "/api/v1/devices/{device_id:str}/telemetry",
        "/api/v1/devices/{device_id:str}/telemetry/gaps",
        "/api/v1/devices/{device_id:str}/rejected",
        "/api/v1/devices/{device_id:str}/presence",
        "/api/v1/devices/{device_id:str}/events",
        "/api/v1/devices/{device_id:str}/trips",
        "/api/v1/devices/{device_id:str}/stops",
        "/api/v1/devices/{device_id:str}/idling",
        "/api/v1/devices/{device_id:str}/summary",
        "/api/v1/groups/{name:str}/summary",
        "/api/v1/devices/{device_id:str}/twin",
        "/api/v1/groups/{name:str}/twin",
        "/api/v1/rejected",
        "/api/v1/groups",
        "/api/v1/groups/{name:str}",
        "/api/v1/state",
        "/api/v1/devices/{device_id:str}/track",
        "/api/v1/live",
        "/api/v1/users",
        "/api/v1/api-keys",
        "/api/v1/api-keys/{key_id:int}",
        "/api/v1/ingest",
        "/api/v1/rules",
        "/api/v1/rules/{rule_id:int}",
        "/api/v1/alerts",
        "/api/v1/alerts/{alert_id:int}",
        "/api/v1/alerts/{alert_id:int}/acknowledge",
        "/api/v1/alerts/{alert_id:int}/clear",
        "/api/v1/alerts/{alert_id:int}/comments",
        "/api/v1/notification-channels",
        "/api/v1/notification-channels/{channel_id:int}",
        "/api/v1/notifications",
        "/api/v1/notifications/{notification_id:int}/retry",
        "/api/v1/geofences",
        "/api/v1/geofences/{fence_id:int}",
        "/api/v1/geofences/{fence_id:int}/time-inside",
        "/api/v1/devices/{device_id:str}/geofence-events",
        "/api/v1/devices/{device_id:str}/commands",
        "/api/v1/commands/{command_id:str}",
        "/api/v1/commands/{command_id:str}/cancel",
        "/api/v1/command-catalogue",
        "/api/v1/firmware",
        "/api/v1/firmware/{image_id:int}",
        "/api/v1/firmware/{image_id:int}/image",
        "/api/v1/devices/{device_id:str}/firmware-update",
        "/api/v1/rollouts",
        "/api/v1/maintenance-schedules",
        "/api/v1/maintenance-schedules/{schedule_id:int}",
        "/api/v1/devices/{device_id:str}/maintenance",
        "/api/v1/devices/{device_id:str}/health",
        "/api/v1/groups/{name:str}/health",
        "/api/v1/rollouts/{rollout_id:int}",
        "/api/v1/rollouts/{rollout_id:int}/stop",
        "/healthz",
        "/readyz",
        "/",
        "/ui/{build:str}/{path:path}",
        "/sw.js",
        "/manifest.webmanifest",
        "/schema/openapi.json",
        "/asyncapi.json",
        # Public and tested in test_api_accounts.py and test_api_health.py:
        "/api/v1/auth/token",
        # Needs an account behind its token (the matrix mints tokens without one): test_api_refresh.py.
        "/api/v1/auth/refresh",
        "/schema",
        "/schema/{path:str}",
    }
    assert app_paths == covered


async def test_authz_refusals_are_problems_with_a_bearer_challenge(client: httpx.AsyncClient, world: World) -> None:
    missing = await client.get("/api/v1/devices")
    expired = await client.get(
        "/api/v1/devices", headers=bearer(jwt.encode(claims(exp=int(time.time()) - 5), TEST_JWT_SECRET))
    )
    forbidden = await client.get("/api/v1/users", headers=bearer(mint_token(world.settings, "v", "viewer")))
    read_only = await client.post("/api/v1/api-keys", json={"name": "x"}, headers={"X-API-Key": world.keys["north"]})

    for response in (missing, expired):
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.headers["www-authenticate"].startswith("Bearer")
    assert expired.json()["detail"] == "invalid or expired token"
    assert forbidden.status_code == 403
    assert forbidden.headers["content-type"] == "application/problem+json"
    assert "admin" in forbidden.json()["detail"]
    assert read_only.status_code == 403
    assert read_only.json()["detail"] == "API keys are read-only"


async def ws_status(world: World, query: dict[str, str]) -> tuple[int, dict[str, Any] | None]:
    url = world.api_url.replace("http://", "ws://") + "/api/v1/live?" + urlencode(query)
    try:
        async with connect(url, open_timeout=WS_TIMEOUT_S):
            return SWITCHING_PROTOCOLS, None
    except InvalidStatus as exc:
        return exc.response.status_code, json.loads(exc.response.body or b"null")


async def test_live_takes_a_token_or_an_api_key_as_query_parameter(world: World) -> None:
    assert await ws_status(world, {"token": mint_token(world.settings, "v", "viewer")}) == (SWITCHING_PROTOCOLS, None)
    assert await ws_status(world, {"token": world.keys["north"]}) == (SWITCHING_PROTOCOLS, None)

    for bad in ("", "garbage", world.keys["revoked"], jwt.encode(claims(exp=int(time.time()) - 5), TEST_JWT_SECRET)):
        status, problem = await ws_status(world, {"token": bad})
        assert status == 401, bad
        assert problem is not None
        assert problem["status"] == 401


async def receive(ws: Any) -> dict[str, Any]:
    decoded: dict[str, Any] = json.loads(await asyncio.wait_for(ws.recv(), WS_TIMEOUT_S))
    return decoded


async def subscribe(ws: Any, devices: list[str], action: str = "subscribe") -> list[dict[str, Any]]:
    await ws.send(json.dumps({"action": action, "devices": devices}))
    replies = [await receive(ws)]
    while replies[-1]["type"] not in {"subscribed", "unsubscribed", "error"}:
        replies.append(await receive(ws))
    return replies


async def test_group_key_lists_reads_and_streams_only_its_group(
    world: World, client: httpx.AsyncClient, redis_client: aioredis.Redis
) -> None:
    north = {"X-API-Key": world.keys["north"]}

    listing = await client.get("/api/v1/devices", headers=north)
    everything = await client.get("/api/v1/devices", headers={"X-API-Key": world.keys["everything"]})
    own_state = await client.get(f"/api/v1/devices/{NORTH_DEVICE}/state", headers=north)
    own_history = await client.get(f"/api/v1/devices/{NORTH_DEVICE}/telemetry", headers=north)

    assert [device["id"] for device in listing.json()["items"]] == [NORTH_DEVICE]
    other_group = await client.get("/api/v1/devices", params={"group": "south"}, headers=north)
    assert other_group.json() == {"items": [], "next_cursor": None}
    assert [device["id"] for device in everything.json()["items"]] == [NORTH_DEVICE, SOUTH_DEVICE, SPARE_DEVICE]
    assert own_state.status_code == 200
    assert own_history.status_code == 200


@pytest.mark.parametrize(
    "resource",
    ["/state", "/telemetry", "", "/telemetry?bucket=1h", "/telemetry?points=10", "/track", "/events", "/twin"],
)
async def test_group_key_sees_a_device_of_another_group_exactly_like_an_unknown_one(
    world: World, client: httpx.AsyncClient, resource: str
) -> None:
    north = {"X-API-Key": world.keys["north"]}

    other = await client.get(f"/api/v1/devices/{SOUTH_DEVICE}{resource}", headers=north)
    unknown = await client.get(f"/api/v1/devices/truck-nobody{resource}", headers=north)

    assert other.status_code == unknown.status_code == 404
    assert other.headers["content-type"] == unknown.headers["content-type"] == "application/problem+json"
    assert other.json() | {"detail": ""} == unknown.json() | {"detail": ""}
    assert other.json()["detail"].replace(SOUTH_DEVICE, "X") == unknown.json()["detail"].replace("truck-nobody", "X")


async def test_group_key_live_stream_serves_its_group_only(world: World, redis_client: aioredis.Redis) -> None:
    url = world.api_url.replace("http://", "ws://") + "/api/v1/live?" + urlencode({"token": world.keys["north"]})
    async with connect(url, open_timeout=WS_TIMEOUT_S) as ws:
        everything = await subscribe(ws, ["*"])
        named = await subscribe(ws, [SOUTH_DEVICE, "truck-nobody"])
        for device_id, value in ((SOUTH_DEVICE, b"1.0"), (NORTH_DEVICE, b"2.0")):
            await redis_client.xadd(
                LIVE_STREAM_KEY, {"d": device_id, "k": "state", "m.fuel": encode_field(TS_MS + 1, 0, 2, value)}
            )
        update = await receive(ws)
        dropped = await subscribe(ws, ["*"], action="unsubscribe")
        await redis_client.xadd(
            LIVE_STREAM_KEY, {"d": NORTH_DEVICE, "k": "state", "m.fuel": encode_field(TS_MS + 2, 0, 3, b"3.0")}
        )
        after = await subscribe(ws, [NORTH_DEVICE], action="unsubscribe")

    assert [(reply["type"], reply.get("device_id")) for reply in everything] == [
        ("snapshot", NORTH_DEVICE),
        ("subscribed", None),
    ]
    assert everything[0]["state"]["metrics"]["fuel"]["value"] == 50.0
    # Another group's device and an unknown one: the same null snapshot, and no updates.
    assert named == [
        {"type": "snapshot", "device_id": "truck-nobody", "state": None},
        {"type": "snapshot", "device_id": SOUTH_DEVICE, "state": None},
        {"type": "subscribed", "devices": [SOUTH_DEVICE, "truck-nobody"]},
    ]
    assert update["device_id"] == NORTH_DEVICE
    assert dropped == [{"type": "unsubscribed", "devices": ["*"]}]
    assert after == [{"type": "unsubscribed", "devices": [NORTH_DEVICE]}]  # no update arrived in between


async def test_group_key_sees_only_its_own_group(world: World, client: httpx.AsyncClient) -> None:
    north = {"X-API-Key": world.keys["north"]}

    listing = await client.get("/api/v1/groups", headers=north)
    own = await client.get("/api/v1/groups/north", headers=north)
    other = await client.get("/api/v1/groups/south", headers=north)
    unknown = await client.get("/api/v1/groups/nowhere", headers=north)
    everything = await client.get("/api/v1/groups", headers={"X-API-Key": world.keys["everything"]})

    assert [group["name"] for group in listing.json()["items"]] == ["north"]
    assert own.status_code == 200
    assert other.status_code == unknown.status_code == 404
    assert other.json()["detail"].replace("south", "X") == unknown.json()["detail"].replace("nowhere", "X")
    assert [group["name"] for group in everything.json()["items"]] == ["north", "retired", "south"]


async def test_group_key_reads_its_own_groups_twin_only(world: World, client: httpx.AsyncClient) -> None:
    north = {"X-API-Key": world.keys["north"]}

    own = await client.get("/api/v1/groups/north/twin", headers=north)
    other = await client.get("/api/v1/groups/south/twin", headers=north)
    unknown = await client.get("/api/v1/groups/nowhere/twin", headers=north)

    assert own.status_code == 200
    assert other.status_code == unknown.status_code == 404
    assert other.json()["detail"].replace("south", "X") == unknown.json()["detail"].replace("nowhere", "X")


async def test_group_key_fleet_state_holds_its_group_only(world: World, client: httpx.AsyncClient) -> None:
    north = {"X-API-Key": world.keys["north"]}

    own = await client.get("/api/v1/state", headers=north)
    asked_for_other = await client.get("/api/v1/state", params={"ids": SOUTH_DEVICE}, headers=north)
    other_group = await client.get("/api/v1/state", params={"group": "south"}, headers=north)
    everything = await client.get("/api/v1/state", headers={"X-API-Key": world.keys["everything"]})

    assert [state["device_id"] for state in own.json()["items"]] == [NORTH_DEVICE]
    assert asked_for_other.json() == other_group.json() == {"items": [], "next_cursor": None}
    assert [state["device_id"] for state in everything.json()["items"]] == [NORTH_DEVICE, SOUTH_DEVICE]


async def test_group_key_polls_its_group_only(world: World, redis_client: aioredis.Redis) -> None:
    since = await redis_client.xadd(
        LIVE_STREAM_KEY, {"d": NORTH_DEVICE, "k": "state", "m.fuel": encode_field(TS_MS + 1, 0, 2, b"1.0")}
    )
    entries = [
        await redis_client.xadd(
            LIVE_STREAM_KEY, {"d": device_id, "k": "state", "m.fuel": encode_field(TS_MS + 2, 0, 3, b"2.0")}
        )
        for device_id in (SOUTH_DEVICE, NORTH_DEVICE)
    ]
    north = {"X-API-Key": world.keys["north"]}
    # A fresh instance: its group cache is loaded after the world's devices were registered.
    async with running(world.settings) as url, httpx.AsyncClient(base_url=url, timeout=10, headers=north) as client:
        pages = [
            (await client.get("/api/v1/live", params={"since": since.decode(), **selector})).json()
            for selector in ({}, {"group": "south"}, {"devices": SOUTH_DEVICE})
        ]

    assert [[update["device_id"] for update in page["updates"]] for page in pages] == [[NORTH_DEVICE], [], []]
    assert pages[0]["updates"][0]["cursor"] == entries[1].decode()
    assert all(page["next_cursor"] == entries[1].decode() for page in pages)
