"""A wake-up call from PostgreSQL: a `LISTEN` on one channel, so that a reader of a table of changes reads
as soon as a transaction that wrote to it commits, instead of at its next poll.

Only a hint: NOTIFY is delivered at COMMIT but carries nothing the reader relies on, and a reader still
polls (a lost connection, a notification that came while it was reading). One connection per channel
per API instance, outside the pool: a listening connection must stay open and idle.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

import psycopg
from psycopg import sql

log = logging.getLogger(__name__)


class Wake:
    """Waits for a notification on `channel`, or for `timeout_s`, whichever comes first."""

    def __init__(self, url: str, channel: str) -> None:
        self._url = url
        self._channel = channel
        self._conn: psycopg.AsyncConnection[Any] | None = None

    async def wait(self, timeout_s: float) -> bool:
        """True when notified within `timeout_s`; False after the timeout (or when the database is away,
        which the caller's own reads will find out and report)."""
        try:
            conn = await self._connection()
            # Run to its end (it stops after one): a generator left at its `yield` would keep holding the
            # connection's lock.
            notified = False
            async for _ in conn.notifies(timeout=timeout_s, stop_after=1):
                notified = True
            if notified:
                return True
        except (psycopg.Error, OSError) as exc:
            await self.close()
            log.debug("no wake-ups on %s for now (%s): polling", self._channel, exc)
            await asyncio.sleep(timeout_s)
        return False

    async def close(self) -> None:
        """Close the listening connection, if any: at once and without awaiting the server, so that a stop
        that cancels this again cannot leave the connection open."""
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.pgconn.finish()

    async def _connection(self) -> psycopg.AsyncConnection[Any]:
        if self._conn is None or self._conn.closed:
            conn = await psycopg.AsyncConnection.connect(
                self._url, autocommit=True, application_name="fleetbridge-api-listen"
            )
            await conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(self._channel)))
            self._conn = conn
        return self._conn
