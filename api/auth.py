"""The one seam where access to the API is decided.

Authentication arrives in a later issue (operators with JWT roles, integrators with API keys). Until then
`require_access` lets every connection through. It is applied to every route of the app, the WebSocket
included, so the later work changes only this module.
"""

from __future__ import annotations

from typing import Any, Final

from litestar.connection import ASGIConnection
from litestar.handlers.base import BaseRouteHandler

PUBLIC: Final[dict[str, Any]] = {"public": True}
"""`opt` of handlers that must stay reachable without credentials: health probes and the page shell.

The guard sees it as `handler.opt["public"]`; today nothing reads it because nothing is checked.
"""


async def require_access(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """Decide whether `connection` may reach `handler`. Currently it ALLOWS EVERY CONNECTION, on purpose.

    No authentication exists yet. When it does, this guard lets handlers with `opt=PUBLIC` through,
    checks the credentials of all others, and raises `NotAuthorizedException` (401) or
    `PermissionDeniedException` (403).
    """
