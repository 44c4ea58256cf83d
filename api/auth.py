"""The one seam where access to the API is decided: who is calling, and what they may do.

Who (authentication) is Litestar's JWT security (`litestar.security.jwt.JWTAuth`) with a middleware that
also accepts integrator API keys:

* operators send `Authorization: Bearer <jwt>`; the token (HS256, signed with `api.jwt_secret`, issuer
  `fleetbridge`) carries the account name (`sub`), its `role`, an expiry (`api.token_ttl_s`) and the end of
  the session it belongs to (`session_exp`: `api.session_max_s` after the password was given; no token of
  the session outlives it). Tokens are checked without a database read: a role change or a disabled
  account takes effect when the token expires, so they are short-lived; `POST /api/v1/auth/refresh`
  (api/accounts/refresh.py) renews one after reading the account again;
* integrators send `X-API-Key: <key>`, looked up by digest in PostgreSQL (a revoked key stops at once);
* the WebSocket also takes either as `?token=…` (browsers cannot set headers on a WebSocket); a refused
  handshake is answered with a real HTTP 401 or 403 problem where the server supports it.

What (authorisation) is the guard `require_access`, applied to every route of the app, the WebSocket
and the schema included. A handler's `opt` says what it needs: `PUBLIC` (no credentials at all), or the
least role, `OPERATOR` or `ADMIN` (default: viewer). API keys are read-only: viewer-level reads only, and
only of their group's devices when limited to one (handlers check `Principal.group`).
"""

from __future__ import annotations

import json
import logging
import secrets
import time
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from http import HTTPStatus
from typing import Any, Final

from litestar.config.app import AppConfig
from litestar.connection import ASGIConnection
from litestar.enums import ScopeType
from litestar.exceptions import HTTPException, ImproperlyConfiguredException, NotAuthorizedException
from litestar.handlers.base import BaseRouteHandler
from litestar.middleware.authentication import AuthenticationResult
from litestar.openapi.spec import Components, OAuthFlow, OAuthFlows, SecurityScheme
from litestar.plugins.problem_details import ProblemDetailsException
from litestar.security.jwt import JWTAuth, JWTAuthenticationMiddleware, Token
from litestar.types import Receive, Scope, Send

from api.accounts.keys import is_api_key
from api.accounts.roles import Role
from api.accounts.services import find_api_key
from api.backends import provide_pool
from api.devices.services import DeviceGroup
from api.pool import Pool
from api.principal import Principal
from api.problems import forbidden, unauthorized
from config import ApiSettings, SettingsError

log = logging.getLogger(__name__)

PUBLIC: Final[dict[str, Any]] = {"public": True}
"""`opt` of handlers reachable without credentials: health probes, the page shell, the schema, logging in."""
OPERATOR: Final[dict[str, Any]] = {"role": Role.OPERATOR}
"""`opt` of handlers that change devices: operators and admins."""
ADMIN: Final[dict[str, Any]] = {"role": Role.ADMIN}
"""`opt` of handlers that manage users and API keys: admins only."""
DEVICE: Final[dict[str, Any]] = {"device": True}
"""`opt` of handlers that devices call with their own MQTT credentials (HTTP Basic), checked by the handler
itself (api/ingest/): neither operator tokens nor API keys reach them."""
NO_CREDENTIALS: Final[list[dict[str, list[str]]]] = [{}]
"""`security` of documented `PUBLIC` handlers: OpenAPI's way to say that they need no credentials."""

API_KEY_HEADER: Final = "X-API-Key"
# Names and places, not secrets (ruff's S105 guesses from the word "token").
TOKEN_QUERY_PARAMETER: Final = "token"  # noqa: S105
TOKEN_URL: Final = "/api/v1/auth/token"  # noqa: S105
TOKEN_ISSUER: Final = "fleetbridge"  # noqa: S105
JWT_ALGORITHM: Final = "HS256"
# RFC 7518 §3.2: an HS256 key at least as long as the hash; PyJWT warns below that.
JWT_SECRET_MIN_BYTES: Final = 32
BEARER_SCHEME: Final = "OAuth2PasswordBearer"
API_KEY_SCHEME: Final = "ApiKey"
DEVICE_SCHEME: Final = "DeviceBasic"
_READ_METHODS: Final = frozenset({"GET", "HEAD"})


@dataclass
class OperatorToken(Token):
    """Litestar's JWT with the account's role and its session's end (Unix seconds) as claims of their own."""

    role: str = ""
    session_exp: int = 0  # 0: a token from before sessions had an end; it is not renewed


def access_refusal(principal: object, opt: Mapping[str, Any], method: str | None) -> HTTPException | None:
    """Why `principal` may not call a handler with `opt` by `method` (None: a WebSocket), or None if it may."""
    if opt.get("public") or opt.get("device"):
        return None
    if not isinstance(principal, Principal):
        return unauthorized("credentials required: Authorization: Bearer <token> or X-API-Key: <key>")
    needed = Role(opt.get("role", Role.VIEWER))
    if principal.is_api_key and (needed is not Role.VIEWER or (method is not None and method not in _READ_METHODS)):
        return forbidden("API keys are read-only")
    if not principal.role.includes(needed):
        return forbidden(f"this needs the {needed} role; {principal.name} is {principal.role}")
    return None


async def require_access(connection: ASGIConnection[Any, Any, Any, Any], handler: BaseRouteHandler) -> None:
    """The guard on every route: let `PUBLIC` handlers through, else require a principal with the role needed.

    Raises a 401 problem without credentials and a 403 problem without the role (or with an API key,
    for anything but reading).
    """
    method = connection.scope.get("method")
    refusal = access_refusal(connection.scope.get("user"), handler.opt, method if isinstance(method, str) else None)
    if refusal is not None:
        raise refusal


def principal_of(connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The principal of an authenticated connection (a handler behind `require_access` always has one)."""
    principal = connection.scope.get("user")
    if not isinstance(principal, Principal):
        raise unauthorized("credentials required")
    return principal


def device_group(principal: Principal, pool: Pool) -> DeviceGroup | None:
    """The only devices `principal` may see, or None when it may see every device."""
    return DeviceGroup(pool, principal.group) if principal.group is not None else None


async def may_see_device(principal: Principal, pool: Pool, device_id: str) -> bool:
    """True unless `principal` is limited to a group that `device_id` is not in (or that does not hold it).

    A refused device must be answered like one that does not exist (404), never 403.
    """
    group = device_group(principal, pool)
    return group is None or await group.contains(device_id)


async def principal_from_token(
    token: OperatorToken, connection: ASGIConnection[Any, Any, Any, Any]
) -> Principal | None:
    """The operator a valid token names; None (refused) when its role is not one we know."""
    return _operator(token)


def _operator(token: OperatorToken) -> Principal | None:
    try:
        role = Role(token.role)
    except ValueError:
        return None
    return Principal(name=token.sub, role=role, expires_at=token.exp.timestamp())


async def principal_from_key(key: str, connection: ASGIConnection[Any, Any, Any, Any]) -> Principal:
    """The integrator an API key belongs to; 401 when it is unknown or revoked."""
    async with provide_pool(connection.app.state).connection() as conn:
        found = await find_api_key(conn, key)
    if found is None:
        raise unauthorized("unknown or revoked API key")
    return Principal(name=found.name, role=Role.VIEWER, api_key_id=found.id, group=found.group)


class FleetAuthenticationMiddleware(JWTAuthenticationMiddleware):
    """Litestar's JWT middleware, also taking API keys, and `?token=` on WebSocket handshakes."""

    async def authenticate_request(self, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        """Authenticate by `X-API-Key`, else `Authorization: Bearer`, else (WebSocket only) `?token=`.

        Routes for devices (`DEVICE`) pass with no principal: their handler checks the device's credentials.
        """
        handler = connection.scope.get("route_handler")
        if handler is not None and handler.opt.get("device"):
            return AuthenticationResult(user=None, auth=None)
        key = connection.headers.get(API_KEY_HEADER)
        if key:
            return AuthenticationResult(user=await principal_from_key(key, connection), auth=None)
        header = connection.headers.get(self.auth_header)
        if header:
            scheme, _, credentials = header.partition(" ")
            if scheme.lower() != "bearer" or not credentials.strip():
                raise unauthorized(f"{self.auth_header} must be 'Bearer <token>'")
            return await self._token(credentials.strip(), connection)
        if connection.scope["type"] == ScopeType.WEBSOCKET:
            credentials = connection.query_params.get(TOKEN_QUERY_PARAMETER, "")
            if is_api_key(credentials):
                return AuthenticationResult(user=await principal_from_key(credentials, connection), auth=None)
            if credentials:
                return await self._token(credentials, connection)
        raise unauthorized(f"credentials required: {self.auth_header}: Bearer <token> or {API_KEY_HEADER}: <key>")

    async def _token(self, encoded: str, connection: ASGIConnection[Any, Any, Any, Any]) -> AuthenticationResult:
        try:
            return await self.authenticate_token(encoded_token=encoded, connection=connection)
        except NotAuthorizedException:
            # One answer for every bad token (expired, tampered, unsigned, other key): nothing to probe.
            raise unauthorized("invalid or expired token") from None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        """For WebSocket handshakes, decide access before accepting, and refuse with an HTTP answer.

        Refused otherwise, a handshake is closed before it is accepted, which every ASGI server turns into
        a bare 403: the client could not tell a missing token (401) from a missing role (403).
        """
        handler = scope.get("route_handler")
        if (
            scope["type"] != ScopeType.WEBSOCKET
            or handler is None
            or handler.opt.get(self.exclude_opt_key)
            or "websocket.http.response" not in (scope.get("extensions") or {})
        ):
            await super().__call__(scope, receive, send)
            return
        try:
            result = await self.authenticate_request(ASGIConnection(scope))
            refusal = access_refusal(result.user, handler.opt, None)
            if refusal is not None:
                raise refusal
        except HTTPException as exc:
            await _refuse_handshake(send, exc)
            return
        scope["user"] = result.user
        scope["auth"] = result.auth
        await self.app(scope, receive, send)


async def _refuse_handshake(send: Send, exc: HTTPException) -> None:
    """Answer a WebSocket handshake with an RFC 9457 problem (the ASGI `websocket.http.response` extension)."""
    title = exc.title if isinstance(exc, ProblemDetailsException) else HTTPStatus(exc.status_code).phrase
    body = json.dumps({"status": exc.status_code, "title": title, "detail": exc.detail}).encode()
    headers = [(b"content-type", b"application/problem+json"), (b"content-length", str(len(body)).encode())]
    headers += [(name.lower().encode(), value.encode()) for name, value in (exc.headers or {}).items()]
    await send({"type": "websocket.http.response.start", "status": exc.status_code, "headers": headers})
    await send({"type": "websocket.http.response.body", "body": body, "more_body": False})


@dataclass
class FleetAuth(JWTAuth[Principal, OperatorToken]):
    """The app's security config: JWT bearer tokens from the login route, or API keys, in the OpenAPI document."""

    @property
    def openapi_components(self) -> Components:
        """Both ways in: OAuth2's password flow (it yields the bearer token) and the API-key header."""
        return Components(
            security_schemes={
                BEARER_SCHEME: SecurityScheme(
                    type="oauth2",
                    flows=OAuthFlows(password=OAuthFlow(token_url=TOKEN_URL, scopes={})),
                    description="Operators: log in for a short-lived JWT, then send Authorization: Bearer <token>.",
                ),
                API_KEY_SCHEME: SecurityScheme(
                    type="apiKey",
                    name=API_KEY_HEADER,
                    security_scheme_in="header",
                    description="Integrators: a read-only key, possibly limited to one device group.",
                ),
                DEVICE_SCHEME: SecurityScheme(
                    type="http",
                    scheme="basic",
                    description="Devices (HTTP ingest only): the device id and the device's own MQTT secret.",
                ),
            }
        )

    @property
    def security_requirement(self) -> dict[str, list[str]]:
        """The bearer token; the API key is added as the alternative in `on_app_init`."""
        return {BEARER_SCHEME: []}

    def on_app_init(self, app_config: AppConfig) -> AppConfig:
        """Install the middleware and document the schemes as alternatives (either one suffices)."""
        app_config = super().on_app_init(app_config)
        if app_config.openapi_config is not None and isinstance(app_config.openapi_config.security, list):
            app_config.openapi_config.security.append({API_KEY_SCHEME: []})
        return app_config


class TokenIssuer:
    """Signs operators' access tokens with the app's security config (what the login and refresh routes hand
    out)."""

    def __init__(self, security: FleetAuth, session_max_s: int | None = None) -> None:
        self._security = security
        self._session_max_s = ApiSettings().session_max_s if session_max_s is None else session_max_s

    def issue(self, username: str, role: Role, session_exp: int | None = None) -> str:
        """A signed access token for an operator, valid for `ttl_s` but never past `session_exp` (Unix seconds).

        Without `session_exp` (a login) a new session starts, ending `session_max_s` from now.
        """
        now = time.time()
        session_end = session_exp if session_exp is not None else int(now) + self._session_max_s
        return self._security.create_token(
            identifier=username,
            token_issuer=TOKEN_ISSUER,
            token_expiration=timedelta(seconds=min(self.ttl_s, session_end - now)),
            role=role.value,
            session_exp=session_end,
        )

    @property
    def ttl_s(self) -> int:
        """How long an issued token is valid, in seconds (at most: none outlives its session)."""
        return int(self._security.default_token_expiration.total_seconds())

    @property
    def first_ttl_s(self) -> int:
        """How long the token of a login is valid: `ttl_s`, or the whole session when that is shorter."""
        return min(self.ttl_s, self._session_max_s)

    def verify(self, encoded: str) -> Principal | None:
        """The operator a token names, checked as the middleware checks it; None for any bad token."""
        security = self._security
        try:
            token = OperatorToken.decode(
                encoded_token=encoded,
                secret=security.token_secret,
                algorithm=security.algorithm,
                issuer=security.accepted_issuers,
                require_claims=security.require_claims,
            )
        except (NotAuthorizedException, ImproperlyConfiguredException):
            return None
        return _operator(token)


def session_end_of(connection: ASGIConnection[Any, Any, Any, Any]) -> int:
    """The `session_exp` claim of the bearer token that authenticated `connection` (0: none, or an API key)."""
    token = connection.scope.get("auth")
    return token.session_exp if isinstance(token, OperatorToken) else 0


def renewed(current: Principal, tokens: TokenIssuer, encoded: str) -> Principal | str:
    """The principal a fresh token gives a live connection authorised as `current`, or why it gives none.

    Only the same account may renew: a connection never changes hands. The new token's role replaces the
    old one (an account whose role was lowered renews with a token of the lower role).
    """
    if current.is_api_key:
        return "this connection uses an API key: keys do not expire, nothing to renew"
    principal = tokens.verify(encoded)
    if principal is None:
        return "token refused: invalid or expired"
    if principal.name != current.name:
        return "the token is for another account; reconnect to change accounts"
    return principal


def build_auth(settings: ApiSettings) -> FleetAuth:
    """The security config for `settings`; raises `SettingsError` for a secret too short to sign with."""
    secret = settings.jwt_secret
    if not secret:
        log.warning(
            "FLEETBRIDGE_API_JWT_SECRET is not set: signing tokens with a random secret of this process;"
            " tokens will not survive a restart and other API instances will refuse them"
        )
        secret = secrets.token_urlsafe(JWT_SECRET_MIN_BYTES)
    elif len(secret.encode()) < JWT_SECRET_MIN_BYTES:
        raise SettingsError(f"FLEETBRIDGE_API_JWT_SECRET: expected at least {JWT_SECRET_MIN_BYTES} bytes")
    return FleetAuth(
        token_secret=secret,
        retrieve_user_handler=principal_from_token,
        token_cls=OperatorToken,
        algorithm=JWT_ALGORITHM,
        default_token_expiration=timedelta(seconds=settings.token_ttl_s),
        accepted_issuers=[TOKEN_ISSUER],
        require_claims=["role"],
        authentication_middleware_class=FleetAuthenticationMiddleware,
        exclude_opt_key="public",
        # Every method authenticates (Litestar skips HEAD and OPTIONS by default).
        exclude_http_methods=[],
        openapi_security_scheme_name=BEARER_SCHEME,
    )
