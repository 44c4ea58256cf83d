"""`POST /api/v1/auth/refresh`: a still-valid operator token for a fresh one, without the password.

The account is read again first: a deleted or disabled account, or one whose role changed since the
password was given, gets no new token (its holder signs in again and gets the role it has now). Every
token of a session carries the session's end (`session_exp`, `api.session_max_s` after the login) and
none outlives it: past that end only the password starts a new session.
"""

from __future__ import annotations

import time
from typing import Any, Final

from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.status_codes import HTTP_200_OK

from api.accounts.schemas import TokenResponse
from api.accounts.services import find_user
from api.auth import TokenIssuer, principal_of, session_end_of
from api.pool import Pool
from api.problems import forbidden, unauthorized

# A token must live at least this long to be worth handing out; closer to the session's end, sign in again.
MIN_RENEWED_S: Final = 5
# RFC 6749 §5.1: a response carrying a token must not be cached.
_NO_STORE: Final = {"Cache-Control": "no-store", "Pragma": "no-cache"}


@post("/auth/refresh", status_code=HTTP_200_OK, tags=["auth"], summary="Renew an access token")
async def refresh(
    request: Request[Any, Any, Any], pool: NamedDependency[Pool], tokens: NamedDependency[TokenIssuer]
) -> Response[TokenResponse]:
    """Trade the bearer token of this request, while it is valid, for a new one of the same session.

    401 when the account no longer exists, is disabled or has another role than the token says, and when
    the session is over (`api.session_max_s` after the login): the password is needed again. 403 for an
    API key (keys do not expire).
    """
    principal = principal_of(request)
    if principal.is_api_key:
        raise forbidden("API keys do not expire: there is nothing to renew")
    session_end = session_end_of(request)
    if session_end - time.time() < MIN_RENEWED_S:
        raise unauthorized("the session is over: log in again")
    async with pool.connection() as conn:
        account = await find_user(conn, principal.name)
    if account is None or account.disabled:
        raise unauthorized("the account no longer exists or is disabled")
    if account.role is not principal.role:
        raise unauthorized(f"the account's role is now {account.role}: log in again")
    token = tokens.issue(account.username, account.role, session_exp=session_end)
    expires_in = int(min(tokens.ttl_s, session_end - time.time()))
    return Response(TokenResponse(access_token=token, expires_in=expires_in, role=account.role), headers=_NO_STORE)
