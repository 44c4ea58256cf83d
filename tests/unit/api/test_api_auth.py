"""The authentication seam: one guard covers every route, the WebSocket and the schema included."""

from __future__ import annotations

from litestar.handlers.base import BaseRouteHandler

from api.app import create_app
from api.auth import require_access
from config import DatabaseSettings, RedisSettings, Settings

# Never contacted: building an app opens nothing until its lifespan starts.
SETTINGS = Settings(
    redis=RedisSettings(url="redis://127.0.0.1:1/0"), database=DatabaseSettings(url="postgresql://127.0.0.1:1/x")
)


def test_every_route_handler_passes_the_access_guard() -> None:
    app = create_app(SETTINGS)
    handlers: list[BaseRouteHandler] = []
    for route in app.routes:
        # HTTP routes group handlers by method; WebSocket and ASGI routes have exactly one.
        handlers += getattr(route, "route_handlers", None) or [route.route_handler]  # type: ignore[union-attr]

    paths = {route.path for route in app.routes}
    assert {"/api/v1/live", "/api/v1/devices", "/healthz", "/", "/schema/openapi.json"} <= paths
    assert all(require_access in handler.resolve_guards() for handler in handlers)


def test_each_call_builds_a_separate_app() -> None:
    assert create_app(SETTINGS) is not create_app(SETTINGS)
