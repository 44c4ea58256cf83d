"""Request and response payloads of logging in and of managing users and API keys."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from api.accounts.passwords import PASSWORD_MAX_CHARS, PASSWORD_MIN_CHARS
from api.accounts.roles import Role

# The grammar of usernames and key names (models/migrations/0004_operators.sql checks it too): safe in
# logs, Redis keys and URLs.
NAME_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}$"
GROUP_MAX_CHARS: Final = 128

Name = Annotated[
    str, Meta(pattern=NAME_PATTERN, description="1 to 64 of A-Z a-z 0-9 _ . @ -, not starting with a symbol")
]
Password = Annotated[str, Meta(min_length=PASSWORD_MIN_CHARS, max_length=PASSWORD_MAX_CHARS)]
Group = Annotated[str, Meta(min_length=1, max_length=GROUP_MAX_CHARS)]


class LoginRequest(msgspec.Struct, frozen=True, kw_only=True):
    """OAuth2's password grant (RFC 6749 §4.3) as a form, or the same fields as JSON."""

    username: Annotated[str, Meta(min_length=1, max_length=64)]
    password: Annotated[str, Meta(min_length=1, max_length=PASSWORD_MAX_CHARS)]
    grant_type: str | None = None


class TokenResponse(msgspec.Struct, frozen=True, kw_only=True):
    """An access token (RFC 6749 §5.1): send it as `Authorization: Bearer <access_token>`."""

    access_token: str
    token_type: str = "bearer"  # noqa: S105  an OAuth2 token type, not a secret
    expires_in: int
    role: Role


class UserCreate(msgspec.Struct, frozen=True, kw_only=True):
    """A new operator account."""

    username: Name
    role: Role
    password: Password


class User(msgspec.Struct, frozen=True, kw_only=True):
    """An operator account (its password hash never leaves the database)."""

    username: str
    role: Role
    created_at: datetime
    disabled: bool


class ApiKeyCreate(msgspec.Struct, frozen=True, kw_only=True):
    """A new read-only integrator key, for every device or only those of one group (`devices.group_name`)."""

    name: Name
    group: Group | None = None


class ApiKey(msgspec.Struct, frozen=True, kw_only=True):
    """An integrator key as listed: its first characters, never the key."""

    id: int
    name: str
    prefix: str
    group: str | None
    created_at: datetime
    revoked_at: datetime | None


class CreatedApiKey(ApiKey, frozen=True, kw_only=True):
    """A key just made: `key` is shown this once and cannot be recovered (only its digest is stored)."""

    key: str
