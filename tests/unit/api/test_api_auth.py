"""The access seam: one guard on every route, and what it decides for each kind of caller."""

from __future__ import annotations

import logging
from typing import Any

import pytest
from litestar.exceptions import HTTPException
from litestar.handlers.base import BaseRouteHandler

from api.accounts.roles import Role
from api.app import create_app
from api.auth import ADMIN, DEVICE, OPERATOR, PUBLIC, access_refusal, build_auth, require_access
from api.principal import Principal
from config import ApiSettings, DatabaseSettings, RedisSettings, Settings, SettingsError

# Never contacted: building an app opens nothing until its lifespan starts.
SETTINGS = Settings(
    redis=RedisSettings(url="redis://127.0.0.1:1/0"),
    database=DatabaseSettings(url="postgresql://127.0.0.1:1/x"),
    api=ApiSettings(jwt_secret="unit-test-secret-0123456789abcdefghij"),
)
VIEWER: dict[str, Any] = {}

ADMIN_USER = Principal("ada", Role.ADMIN)
OPERATOR_USER = Principal("otto", Role.OPERATOR)
VIEWER_USER = Principal("vic", Role.VIEWER)
KEY = Principal("acme", Role.VIEWER, api_key_id=1)
GROUP_KEY = Principal("acme-north", Role.VIEWER, api_key_id=2, group="north")


def handlers_by_path(settings: Settings) -> list[tuple[str, BaseRouteHandler]]:
    found: list[tuple[str, BaseRouteHandler]] = []
    for route in create_app(settings).routes:
        # HTTP routes group handlers by method; WebSocket and ASGI routes have exactly one.
        handlers = getattr(route, "route_handlers", None) or [route.route_handler]  # type: ignore[union-attr]
        found += [(route.path, handler) for handler in handlers]
    return found


def test_every_route_handler_passes_the_access_guard() -> None:
    app = create_app(SETTINGS)
    paths = {route.path for route in app.routes}

    assert {"/api/v1/live", "/api/v1/devices", "/api/v1/users", "/healthz", "/", "/schema/openapi.json"} <= paths
    assert all(require_access in handler.resolve_guards() for _, handler in handlers_by_path(SETTINGS))


def test_only_probes_the_web_app_the_schemas_logging_in_and_signed_downloads_are_public() -> None:
    public = {path for path, handler in handlers_by_path(SETTINGS) if handler.opt.get("public")}

    assert public == {
        "/healthz",
        "/readyz",
        "/",
        "/ui/{build:str}/{path:path}",  # the app's own files: its data comes from the guarded API
        "/sw.js",  # the app's service worker and manifest: code and names, no data
        "/manifest.webmanifest",
        "/api/v1/auth/token",
        "/schema",
        "/schema/openapi.json",
        "/schema/{path:str}",
        "/asyncapi.json",
        # Firmware for devices, which have no API credentials: the handler checks the signed link their
        # update command carries (tests/integration/api/test_api_firmware.py).
        "/api/v1/firmware/{image_id:int}/image",
    }


def test_only_ingest_takes_device_credentials_and_the_guard_leaves_their_check_to_it() -> None:
    device_routes = {path for path, handler in handlers_by_path(SETTINGS) if handler.opt.get("device")}

    assert device_routes == {"/api/v1/ingest"}
    # The handler checks the device's own secret; no operator principal is needed or used.
    assert [status(principal, DEVICE, "POST") for principal in (None, VIEWER_USER, KEY)] == [200, 200, 200]


def test_each_call_builds_a_separate_app() -> None:
    assert create_app(SETTINGS) is not create_app(SETTINGS)


def status(principal: object, opt: dict[str, Any], method: str | None = "GET") -> int:
    refusal = access_refusal(principal, opt, method)
    return 200 if refusal is None else refusal.status_code


@pytest.mark.parametrize(
    ("principal", "expected"),
    [
        # viewer-level GET, viewer-level POST, operator-level POST, admin-level GET, public, WebSocket
        (ADMIN_USER, [200, 200, 200, 200, 200, 200]),
        (OPERATOR_USER, [200, 200, 200, 403, 200, 200]),
        (VIEWER_USER, [200, 200, 403, 403, 200, 200]),
        (KEY, [200, 403, 403, 403, 200, 200]),
        (GROUP_KEY, [200, 403, 403, 403, 200, 200]),
        (None, [401, 401, 401, 401, 200, 401]),
        ("not a principal", [401, 401, 401, 401, 200, 401]),
    ],
)
def test_access_refusal_follows_the_role_hierarchy_and_keeps_keys_read_only(
    principal: object, expected: list[int]
) -> None:
    seen = [
        status(principal, VIEWER, "GET"),
        status(principal, VIEWER, "POST"),
        status(principal, OPERATOR, "POST"),
        status(principal, ADMIN, "GET"),
        status(principal, PUBLIC, "GET"),
        status(principal, VIEWER, None),
    ]

    assert seen == expected


def test_refusals_say_what_is_missing() -> None:
    missing = access_refusal(None, VIEWER, "GET")
    too_low = access_refusal(VIEWER_USER, ADMIN, "GET")

    assert isinstance(missing, HTTPException)
    assert missing.headers is not None
    assert missing.headers["WWW-Authenticate"].startswith("Bearer")
    assert isinstance(too_low, HTTPException)
    assert too_low.detail == "this needs the admin role; vic is viewer"


def test_roles_include_the_roles_below_them() -> None:
    assert [role for role in Role if Role.OPERATOR.includes(role)] == [Role.VIEWER, Role.OPERATOR]
    assert Role.ADMIN.includes(Role.OPERATOR)
    assert not Role.VIEWER.includes(Role.OPERATOR)


def test_build_auth_refuses_a_secret_too_short_for_hs256() -> None:
    with pytest.raises(SettingsError, match="FLEETBRIDGE_API_JWT_SECRET"):
        build_auth(ApiSettings(jwt_secret="short"))


def test_build_auth_without_a_secret_warns_and_signs_with_a_random_one(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="api.auth"):
        first, second = build_auth(ApiSettings()), build_auth(ApiSettings())

    assert "will not survive a restart" in caplog.text
    assert first.token_secret != second.token_secret
    assert len(first.token_secret) >= 32
    assert first.default_token_expiration.total_seconds() == ApiSettings().token_ttl_s
