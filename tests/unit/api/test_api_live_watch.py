"""Which credentials end a live connection, and with which close code (no database: the pure rules)."""

from __future__ import annotations

import asyncio

from api.accounts.roles import Role
from api.live.watch import (
    CLOSE_CREDENTIAL_ENDED,
    CLOSE_ROLE_LOWERED,
    Ended,
    Watched,
    account_reason,
    expiry_reason,
    unless_ended,
)
from api.principal import Principal


def test_expiry_reason_ends_a_token_at_its_expiry_and_never_an_api_key() -> None:
    token = Principal(name="nina", role=Role.VIEWER, expires_at=1000.0)
    key = Principal(name="acme", role=Role.VIEWER, api_key_id=3)

    assert expiry_reason(token, 999.9) is None
    ended = expiry_reason(token, 1000.0)
    assert ended is not None
    assert ended.code == CLOSE_CREDENTIAL_ENDED
    assert expiry_reason(key, 10**12) is None


def test_account_reason_names_deleted_disabled_and_lowered_accounts() -> None:
    admin = Principal(name="ada", role=Role.ADMIN, expires_at=1.0)

    assert account_reason(admin, None) == Ended(CLOSE_CREDENTIAL_ENDED, "account deleted")
    assert account_reason(admin, ("admin", True)) == Ended(CLOSE_CREDENTIAL_ENDED, "account disabled")
    lowered = account_reason(admin, ("operator", False))
    assert lowered is not None
    assert lowered.code == CLOSE_ROLE_LOWERED
    assert account_reason(admin, ("admin", False)) is None
    # A raised role leaves the token's (lower) claims true: the connection goes on.
    assert account_reason(Principal(name="ada", role=Role.VIEWER), ("admin", False)) is None


async def test_unless_ended_cancels_the_work_when_the_credential_ends() -> None:
    watched = Watched(Principal(name="nina", role=Role.VIEWER))
    cancelled = asyncio.Event()

    async def work() -> str:
        try:
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return "page"

    asyncio.get_running_loop().call_soon(watched.end, Ended(CLOSE_CREDENTIAL_ENDED, "API key revoked"))
    answer = await unless_ended(watched, work())

    assert answer == Ended(CLOSE_CREDENTIAL_ENDED, "API key revoked")
    assert cancelled.is_set()


async def test_unless_ended_returns_the_work_while_the_credential_holds() -> None:
    watched = Watched(Principal(name="nina", role=Role.VIEWER))

    async def work() -> str:
        return "page"

    assert await unless_ended(watched, work()) == "page"
