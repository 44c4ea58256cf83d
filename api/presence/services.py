"""Reading the recorded presence changes of a device and turning them into intervals."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from api.pool import Pool
from api.presence.schemas import PresenceInterval, PresenceTimeline

CHANGES_MAX: Final = 5000
# The presence at the window's start (the last change before it), then the changes inside the window; by
# id within one instant (a batch that changed a device twice in one transaction has one now()).
_CHANGES: Final = (
    "(SELECT at, presence, source FROM presence_history WHERE device_id = %(device_id)s AND at <= %(start)s"
    " ORDER BY at DESC, id DESC LIMIT 1)"
    " UNION ALL"
    " (SELECT at, presence, source FROM presence_history"
    " WHERE device_id = %(device_id)s AND at > %(start)s AND at < %(end)s ORDER BY at, id LIMIT %(limit)s)"
)


def intervals(
    changes: Sequence[tuple[datetime, str, str | None]], start: datetime, end: datetime
) -> list[PresenceInterval]:
    """The intervals between `changes` (oldest first), cut to `[start, end)`; empty ones are left out."""
    found: list[PresenceInterval] = []
    for index, (at, presence, source) in enumerate(changes):
        until = changes[index + 1][0] if index + 1 < len(changes) else end
        begin, finish = max(at, start), min(until, end)
        if begin >= finish:
            continue
        if found and found[-1].presence == presence:  # the same presence again (a row restored by hand)
            begin = found.pop().start
        found.append(PresenceInterval(presence=presence, source=source, start=begin, end=finish))  # type: ignore[arg-type]
    return found


async def read_timeline(pool: Pool, device_id: str, start: datetime, end: datetime) -> PresenceTimeline:
    """`device_id`'s presence from `start` to `end`, at most `CHANGES_MAX` changes of it."""
    params: dict[str, Any] = {"device_id": device_id, "start": start, "end": end, "limit": CHANGES_MAX + 1}
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.execute(_CHANGES, params)
        rows: list[tuple[datetime, str, str | None]] = await cur.fetchall()
    inside = rows[1:] if rows and rows[0][0] <= start else rows
    truncated = len(inside) > CHANGES_MAX
    cut = rows[: len(rows) - 1] if truncated else rows
    stop = rows[-1][0] if truncated else end
    return PresenceTimeline(
        device_id=device_id, start=start, end=stop, intervals=intervals(cut, start, stop), truncated=truncated
    )
