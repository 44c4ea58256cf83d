"""Keep `device_state`, each device's newest value per state field, in PostgreSQL: what `bridge.rebuild`
restores Redis from, so that a rebuild reads devices x fields rows rather than the history.

Off the acknowledgement path: committed batches are folded into a pending set (newest value per device
and field wins, by (ts, boot, seq)), and `flush` writes it in one upsert, newer wins in the table too.
The bridge flushes once a second and at stop, so each device's rows are written at most about once a
second however often it sends. In the batch's own transaction the upsert cost more than the insert and
both rollups together (bench/history.py --sink-cost), and every batch waits for the previous COMMIT.
The price: values committed in the last second before a crash are missing here until their device
sends those fields again (docs/architecture.md, last-known state).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable
from typing import Any, Final

import msgspec
import psycopg

from bridge.decode import Decoded, Newest, newest_values
from bridge.errors import SinkUnavailableError

log = logging.getLogger(__name__)

# One row per pending device and field, in key order so that concurrent bridge instances lock shared
# rows in the same order. Values go as JSON text, encoded as the live state encodes them.
UPSERT_STATE: Final = (
    "INSERT INTO device_state AS s (device_id, field, ts, boot, seq, value)"
    " SELECT u.device_id, u.field, u.ts, u.boot, u.seq, u.value::jsonb"
    " FROM unnest(%s::text[], %s::text[], %s::timestamptz[], %s::int4[], %s::int8[], %s::text[])"
    " AS u(device_id, field, ts, boot, seq, value) ORDER BY 1, 2"
    " ON CONFLICT (device_id, field) DO UPDATE"
    " SET ts = EXCLUDED.ts, boot = EXCLUDED.boot, seq = EXCLUDED.seq, value = EXCLUDED.value"
    " WHERE (EXCLUDED.ts, EXCLUDED.boot, EXCLUDED.seq) > (s.ts, s.boot, s.seq)"
)
_json = msgspec.json.Encoder()
Pending = dict[str, dict[str, Newest]]


class DeviceStateWriter:
    """Folds committed batches into pending newest values and writes them to `device_state` on `flush`."""

    def __init__(self, url: str, *, abandon_after_s: float | None = None) -> None:
        self._url = url
        # As the sink's (`bridge.sink`): a transaction whose link went silent is ended by the server, so that
        # its row locks do not hold the next flush for as long as the dead link lasts.
        # libpq's connection options (an empty string sets none).
        self._options = (
            ""
            if abandon_after_s is None
            else f"-c idle_in_transaction_session_timeout={max(1, round(abandon_after_s * 1000))}"
        )
        self._conn: psycopg.AsyncConnection[Any] | None = None
        self._pending: Pending = {}
        # One flush at a time: at stop the final flush may start while the periodic one is being
        # cancelled, and two would each open a connection and keep one.
        self._flushing = asyncio.Lock()

    def add(self, committed: Iterable[Decoded]) -> None:
        """Fold the accepted samples of a committed batch into what the next flush writes."""
        _fold(self._pending, newest_values(committed))

    def pending(self) -> int:
        """Devices with values not written yet."""
        return len(self._pending)

    async def flush(self) -> int:
        """Write every pending value (newer wins); return the rows sent. On a database failure the values
        stay pending and `SinkUnavailableError` is raised: the next flush tries again."""
        async with self._flushing:
            return await self._flush()

    async def _flush(self) -> int:
        pending, self._pending = self._pending, {}
        if not pending:
            return 0
        columns: tuple[list[Any], ...] = ([], [], [], [], [], [])
        for device, fields in sorted(pending.items()):
            for name, newest in sorted(fields.items()):
                row = (device, name, newest.ts, newest.boot, newest.seq, _json.encode(newest.value).decode())
                for column, value in zip(columns, row, strict=True):
                    column.append(value)
        try:
            if self._conn is None or self._conn.closed:
                self._conn = await psycopg.AsyncConnection.connect(
                    self._url, application_name="fleetbridge-state", options=self._options
                )
            async with self._conn.transaction():
                await self._conn.execute(UPSERT_STATE, columns)
        except BaseException as exc:
            # Not written (or not known to be: writing again is harmless, newer wins): keep them pending,
            # with anything added meanwhile, also when cancelled at stop, so the final flush has them.
            _fold(pending, self._pending)
            self._pending = pending
            if isinstance(exc, psycopg.Error):
                await self._close()
                raise SinkUnavailableError(f"device_state not written: {exc}") from exc
            self._abandon()  # cancelled mid-statement: the connection's state is unknown
            raise
        return len(columns[0])

    def _abandon(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            conn.pgconn.finish()  # without waiting on the server, which rolls back what was open

    async def close(self) -> None:
        """Close the connection, if any (pending values are not written)."""
        async with self._flushing:
            await self._close()

    async def _close(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                await conn.close()
            except psycopg.Error:
                log.debug("ignoring error while closing the device_state connection", exc_info=True)


def _fold(into: Pending, values: Pending) -> None:
    for device, fields in values.items():
        held = into.setdefault(device, {})
        for name, newest in fields.items():
            current = held.get(name)
            if current is None or (newest.ts, newest.boot, newest.seq) > (current.ts, current.boot, current.seq):
                held[name] = newest
