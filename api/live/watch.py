"""Live connections re-checked against their credentials while they last.

A WebSocket or a long poll is authorised once, at its start, and may then run for hours. So every
`interval_s` one watch per app instance checks every open connection's credential again and ends those
whose credential ended:

* a token past its expiry (no database needed: checked even while PostgreSQL is away);
* an operator account deleted or disabled, or whose role was lowered below the one its token claims;
* an API key revoked.

Accounts and keys are read with one query each per round for all connections together, so ten thousand
WebSockets cost two small queries every few seconds, not ten thousand. A round that cannot reach
PostgreSQL is logged and skipped: connections stay open until the next round that can (closing them all
would only make every client reconnect into the same outage).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Final, TypeVar

import psycopg

from api.accounts.roles import Role

if TYPE_CHECKING:  # api.auth and api.backends import the live package: a runtime import would be circular
    from api.pool import Pool
    from api.principal import Principal

log = logging.getLogger(__name__)

T = TypeVar("T")

DEFAULT_INTERVAL_S: Final = 5.0
CLOSE_CREDENTIAL_ENDED: Final = 4401
"""WebSocket close code (private range 4000-4999, after HTTP 401): the token expired, the account was
deleted or disabled, or the API key was revoked. Log in again (or refresh the token) and reconnect."""
CLOSE_ROLE_LOWERED: Final = 4403
"""WebSocket close code (after HTTP 403): the account's role is now lower than the credential claims."""


@dataclass(frozen=True, slots=True)
class Ended:
    """Why a connection's credential no longer holds: a WebSocket close code and its reason (≤ 123 bytes)."""

    code: int
    reason: str


@dataclass(eq=False, slots=True)
class Watched:
    """One connection's credential under watch; `ended` is set once, when it no longer holds."""

    principal: Principal
    ended: Ended | None = None
    _event: asyncio.Event = field(default_factory=asyncio.Event)

    def end(self, why: Ended) -> None:
        """Mark the credential ended (the first reason wins) and wake whoever waits on it."""
        if self.ended is None:
            self.ended = why
            self._event.set()

    async def wait(self) -> Ended:
        """Return once the credential has ended."""
        await self._event.wait()
        assert self.ended is not None  # set before the event
        return self.ended


def expiry_reason(principal: Principal, now: float) -> Ended | None:
    """Ended when `principal`'s token is past its expiry at `now` (UNIX time)."""
    if principal.expires_at is not None and principal.expires_at <= now:
        return Ended(CLOSE_CREDENTIAL_ENDED, "token expired: log in again and reconnect")
    return None


def account_reason(principal: Principal, row: tuple[str, bool] | None) -> Ended | None:
    """Ended when the account behind a token is gone, disabled or of a lower role than the token claims.

    `row` is the account's (role, disabled) now, or None when it no longer exists.
    """
    if row is None:
        return Ended(CLOSE_CREDENTIAL_ENDED, "account deleted")
    role_name, disabled = row
    if disabled:
        return Ended(CLOSE_CREDENTIAL_ENDED, "account disabled")
    try:
        role = Role(role_name)
    except ValueError:
        return Ended(CLOSE_ROLE_LOWERED, "account role unknown")
    if not role.includes(principal.role):
        return Ended(CLOSE_ROLE_LOWERED, f"role lowered to {role}: log in again and reconnect")
    return None


class CredentialWatch:
    """Re-checks the credentials of an app instance's open live connections every `interval_s`."""

    def __init__(
        self, pool: Pool, *, interval_s: float = DEFAULT_INTERVAL_S, clock: Callable[[], float] = time.time
    ) -> None:
        self._pool = pool
        self.interval_s = interval_s
        self._clock = clock
        self._watched: set[Watched] = set()

    def watch(self, principal: Principal) -> Watched:
        """Start watching a connection's credential; `forget` it when the connection ends."""
        watched = Watched(principal)
        self._watched.add(watched)
        return watched

    def forget(self, watched: Watched) -> None:
        """Stop watching (the connection ended)."""
        self._watched.discard(watched)

    @property
    def watched(self) -> int:
        """Connections under watch (for logs and tests)."""
        return len(self._watched)

    async def check(self) -> None:
        """One round: end every watched credential that no longer holds; raises `psycopg.Error` (and
        `OSError`) when PostgreSQL cannot be asked, after the expiry checks."""
        now = self._clock()
        live = [watched for watched in self._watched if watched.ended is None]
        for watched in live:
            expired = expiry_reason(watched.principal, now)
            if expired is not None:
                watched.end(expired)
        live = [watched for watched in live if watched.ended is None]
        accounts = {w.principal.name for w in live if not w.principal.is_api_key}
        keys = {w.principal.api_key_id for w in live if w.principal.api_key_id is not None}
        if not accounts and not keys:
            return
        async with self._pool.connection() as conn, conn.cursor() as cur:
            await cur.execute(
                "SELECT username, role, disabled FROM users WHERE username = ANY(%s)", (sorted(accounts),)
            )
            rows = {username: (role, disabled) for username, role, disabled in await cur.fetchall()}
            await cur.execute("SELECT id FROM api_keys WHERE id = ANY(%s) AND revoked_at IS NULL", (sorted(keys),))
            valid_keys = {key_id for (key_id,) in await cur.fetchall()}
        for watched in live:
            principal = watched.principal
            if principal.api_key_id is not None:
                why = None if principal.api_key_id in valid_keys else Ended(CLOSE_CREDENTIAL_ENDED, "API key revoked")
            else:
                why = account_reason(principal, rows.get(principal.name))
            if why is not None:
                watched.end(why)

    async def run(self) -> None:
        """Check every `interval_s` until cancelled; a round PostgreSQL did not answer is logged and skipped."""
        while True:
            await asyncio.sleep(self.interval_s)
            try:
                await self.check()
            except (psycopg.Error, OSError) as exc:
                log.warning("live credentials not re-checked this round (%s); connections stay open", exc)


async def unless_ended(watched: Watched, work: Awaitable[T]) -> T | Ended:
    """Run `work` until it finishes or the credential ends, whichever comes first (then `work` is cancelled)."""
    task = asyncio.ensure_future(work)
    ended = asyncio.create_task(watched.wait())
    try:
        await asyncio.wait({task, ended}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for pending in (task, ended):
            pending.cancel()
        await asyncio.gather(task, ended, return_exceptions=True)
    if watched.ended is not None:
        return watched.ended  # even if the work finished too: its answer is for a credential that ended
    return task.result()
