"""HTTP endpoints: logging in (public), and users and API keys (admins only)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Final

import msgspec
from litestar import Controller, Request, Response, delete, get, post
from litestar.di import NamedDependency
from litestar.enums import RequestEncodingType
from litestar.exceptions import NotAuthorizedException, TooManyRequestsException
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.params import JSONBody, PathParameter
from litestar.status_codes import HTTP_200_OK, HTTP_201_CREATED, HTTP_204_NO_CONTENT
from redis.asyncio import Redis

from api.accounts.limits import LoginThrottle, Throttled
from api.accounts.schemas import ApiKey, ApiKeyCreate, CreatedApiKey, LoginRequest, TokenResponse, User, UserCreate
from api.accounts.services import (
    Refused,
    authenticate,
    create_api_key,
    create_user,
    list_api_keys,
    list_users,
    revoke_api_key,
)
from api.auth import ADMIN, NO_CREDENTIALS, PUBLIC, TokenIssuer
from api.pool import Pool
from api.problems import ConflictException, bad_request, conflict, not_found, too_many_requests, unauthorized

KEY_ID_MAX: Final = 2**63 - 1  # bigint
_FORM_TYPES: Final = (RequestEncodingType.URL_ENCODED.value, RequestEncodingType.MULTI_PART.value)
# RFC 6749 §5.1: a response carrying a token must not be cached.
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}


def _credentials_schema() -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        required=["username", "password"],
        properties={
            "username": Schema(type=OpenAPIType.STRING),
            "password": Schema(type=OpenAPIType.STRING, format="password"),  # type: ignore[arg-type]
            "grant_type": Schema(type=OpenAPIType.STRING, const="password"),
        },
    )


@dataclass
class LoginOperation(Operation):
    """The login operation documents its body by hand: the handler reads a form or JSON itself."""

    def __post_init__(self) -> None:
        schema = _credentials_schema()
        self.request_body = RequestBody(
            required=True,
            content={media: OpenAPIMediaType(schema=schema) for media in (_FORM_TYPES[0], "application/json")},
        )


async def _read_login(request: Request[Any, Any, Any]) -> LoginRequest:
    media_type = request.content_type[0]
    try:
        if media_type in _FORM_TYPES:
            form = await request.form()
            fields: Any = {name: form.get(name) for name in ("username", "password", "grant_type") if name in form}
        elif media_type == "application/json":
            fields = msgspec.json.decode(await request.body())
        else:
            raise bad_request("send username and password as a form (application/x-www-form-urlencoded) or as JSON")
        login = msgspec.convert(fields, LoginRequest)
    except (msgspec.ValidationError, msgspec.DecodeError) as exc:
        raise bad_request(f"username and password are needed: {exc}") from None
    if login.grant_type not in (None, "password"):
        raise bad_request("grant_type must be 'password'")
    return login


@post(
    "/auth/token",
    opt=PUBLIC,
    security=NO_CREDENTIALS,
    status_code=HTTP_200_OK,
    tags=["auth"],
    summary="Log in",
    operation_class=LoginOperation,
    raises=[NotAuthorizedException, TooManyRequestsException],
)
async def login(
    request: Request[Any, Any, Any],
    pool: NamedDependency[Pool],
    redis: NamedDependency[Redis],
    tokens: NamedDependency[TokenIssuer],
    login_throttle: NamedDependency[LoginThrottle],
) -> Response[TokenResponse]:
    """Trade an operator's username and password for an access token (form or JSON).

    Failed attempts are limited per username and per client address (429 with `Retry-After`).
    """
    credentials = await _read_login(request)
    address = request.client.host if request.client is not None else "unknown"
    attempt = await login_throttle.begin(redis, credentials.username, address)
    if isinstance(attempt, Throttled):
        raise too_many_requests("too many failed logins; try again later", attempt.retry_after_s)
    async with pool.connection() as conn:
        user = await authenticate(conn, credentials.username, credentials.password)
    if user is None:
        raise unauthorized("invalid username or password")
    await login_throttle.succeeded(redis, attempt)
    token = TokenResponse(
        access_token=tokens.issue(user.username, user.role), expires_in=tokens.first_ttl_s, role=user.role
    )
    return Response(token, headers=_NO_STORE)


class UserController(Controller):
    """`/users`: operator accounts (admins only)."""

    path = "/users"
    tags = ("users",)
    opt = ADMIN

    @get("/", summary="List users")
    async def list(self, pool: NamedDependency[Pool]) -> list[User]:
        """Every operator account with its role; never a password or its hash."""
        async with pool.connection() as conn:
            return await list_users(conn)

    @post("/", summary="Add a user", status_code=HTTP_201_CREATED, raises=[ConflictException])
    async def create(self, pool: NamedDependency[Pool], data: JSONBody[UserCreate]) -> User:
        """A new account with a role and a password (at least 12 characters); 409 when the name is taken."""
        async with pool.connection() as conn:
            created = await create_user(conn, data.username, data.role, data.password)
        if isinstance(created, Refused):
            raise conflict(created.reason) if created.conflict else bad_request(created.reason)
        return created


class ApiKeyController(Controller):
    """`/api-keys`: read-only integrator keys (admins only)."""

    path = "/api-keys"
    tags = ("api keys",)
    opt = ADMIN

    @get("/", summary="List API keys")
    async def list(self, pool: NamedDependency[Pool]) -> list[ApiKey]:
        """Every key, revoked ones included, with its first characters only."""
        async with pool.connection() as conn:
            return await list_api_keys(conn)

    @post("/", summary="Make an API key", status_code=HTTP_201_CREATED)
    async def create(self, pool: NamedDependency[Pool], data: JSONBody[ApiKeyCreate]) -> Response[CreatedApiKey]:
        """A new read-only key, optionally limited to one device group. The key is in this answer only."""
        async with pool.connection() as conn:
            created = await create_api_key(conn, data.name, data.group)
        if isinstance(created, Refused):
            raise bad_request(created.reason)
        return Response(created, status_code=HTTP_201_CREATED, headers=_NO_STORE)

    @delete("/{key_id:int}", summary="Revoke an API key", status_code=HTTP_204_NO_CONTENT)
    async def revoke(
        self, pool: NamedDependency[Pool], key_id: Annotated[int, PathParameter(ge=1, le=KEY_ID_MAX)]
    ) -> None:
        """Revoke a key: requests with it fail from now on. Revoking a revoked key is harmless."""
        async with pool.connection() as conn:
            found = await revoke_api_key(conn, key_id)
        if not found:
            raise not_found(f"no API key {key_id}")
