"""Reading a device's stored events, a page at a time."""

from __future__ import annotations

from typing import Any, Final

from psycopg.rows import dict_row

from api.events.query import EventQuery
from api.events.schemas import EventItem, EventPage
from api.pool import Pool
from api.telemetry.cursor import TelemetryCursor, encode_cursor

# Newest first along the key's index (device_id, ts, boot, seq), read backwards; the cursor is the last
# row's (ts, boot, seq), compared as a row so that a page boundary inside one instant loses nothing.
_FILTERS: Final = {
    "since": "ts >= %(since)s",
    "until": "ts < %(until)s",
    "name": "name = %(name)s",
    "before": "(ts, boot, seq) < (%(before_ts)s, %(before_boot)s, %(before_seq)s)",
}


async def fetch_events(pool: Pool, query: EventQuery) -> EventPage:
    """One page of the device's events, newest first."""
    params: dict[str, Any] = {
        "device_id": query.device_id,
        "since": query.since,
        "until": query.until,
        "name": query.name,
        "limit": query.limit + 1,
    }
    if query.before is not None:
        params.update(before_ts=query.before.ts, before_boot=query.before.boot, before_seq=query.before.seq)
    conditions = ["device_id = %(device_id)s"]
    conditions += [
        clause for key, clause in _FILTERS.items() if (params.get(key) if key != "before" else query.before) is not None
    ]
    statement = (
        "SELECT seq, ts, boot, name, data, received_at FROM events WHERE "
        + " AND ".join(conditions)
        + " ORDER BY ts DESC, boot DESC, seq DESC LIMIT %(limit)s"
    )
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(statement, params)  # composed only of the constants above
        rows = await cur.fetchall()
    items = [EventItem(**row) for row in rows[: query.limit]]
    next_cursor = None
    if len(rows) > query.limit:
        last = items[-1]
        next_cursor = encode_cursor(TelemetryCursor(last.ts, last.boot, last.seq))
    return EventPage(device_id=query.device_id, items=items, next_cursor=next_cursor)
