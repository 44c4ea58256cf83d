"""Reading the dead-letter table: what the bridge refused, newest first, with a preview safe to show."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Final

from psycopg.rows import dict_row

from api.devices.schemas import RefusedMessage, RefusedPage
from api.devices.services import where_clause
from api.pool import Pool

REFUSED_PAGE_MAX: Final = 500
REFUSED_PAGE_DEFAULT: Final = 50
PREVIEW_BYTES: Final = 256
# Only what a preview needs is read: never the whole stored payload (up to 64 KiB a row).
_COLUMNS: Final = (
    "id, device_id, topic, received_at, reason, sample_index, seq, boot, payload_size,"
    f" encode(payload_sha256, 'hex') AS payload_sha256, substring(payload FROM 1 FOR {PREVIEW_BYTES}) AS head"
)
_FILTERS: Final = {
    "device_id": "device_id = %(device_id)s",
    "since": "received_at >= %(since)s",
    "before": "id < %(before)s",
}


def preview(head: bytes) -> str:
    """The first `PREVIEW_BYTES` of a payload as printable text.

    Invalid UTF-8 becomes `\\xNN`; control and formatting characters (Unicode categories Cc and Cf:
    line breaks, NUL, bidirectional overrides) become `\\uNNNN`, so a preview cannot break a log line or
    reorder the text around it.
    """
    text = head[:PREVIEW_BYTES].decode("utf-8", "backslashreplace")
    return "".join(f"\\u{ord(char):04x}" if unicodedata.category(char) in ("Cc", "Cf") else char for char in text)


def _item(row: Mapping[str, Any]) -> RefusedMessage:
    return RefusedMessage(
        id=row["id"],
        device_id=row["device_id"],
        topic=row["topic"],
        received_at=row["received_at"],
        reason=row["reason"],
        index=None if row["sample_index"] < 0 else row["sample_index"],
        seq=row["seq"],
        boot=row["boot"],
        payload_size=row["payload_size"],
        payload_sha256=row["payload_sha256"],
        payload_preview=preview(bytes(row["head"])),
        preview_truncated=row["payload_size"] > PREVIEW_BYTES,
    )


async def list_refused(
    pool: Pool, *, limit: int, before: int | None, device_id: str | None = None, since: datetime | None = None
) -> RefusedPage:
    """One page of dead letters, newest first (by id: the order they were stored), optionally of one
    device and received at or after `since`; keyset-paginated, so stable while new refusals arrive."""
    params: dict[str, Any] = {"device_id": device_id, "since": since, "before": before, "limit": limit + 1}
    statement = (
        f"SELECT {_COLUMNS} FROM rejected_messages{where_clause(_FILTERS, params)} ORDER BY id DESC LIMIT %(limit)s"
    )
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(statement, params)
        rows = await cur.fetchall()
    items = [_item(row) for row in rows[:limit]]
    return RefusedPage(items=items, next_cursor=str(items[-1].id) if len(rows) > limit else None)
