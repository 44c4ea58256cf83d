"""What an event listing asks for, validated: parameters in, a query or the reason out."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Final

from api.telemetry.cursor import FormerCursor, TelemetryCursor, decode_cursor
from api.telemetry.query import BadParam, parse_timestamp
from models.topics import DEVICE_ID_PATTERN, is_device_id

LIMIT_DEFAULT: Final = 100
LIMIT_MAX: Final = 1000
NAME_PATTERN: Final = r"^[a-z][a-z0-9_]{0,63}$"  # `models.events.EventName`


@dataclass(frozen=True, slots=True)
class EventQuery:
    """Events of `device_id` with `since <= ts < until` (each optional), of `name` only, before `before`."""

    device_id: str
    since: datetime | None
    until: datetime | None
    name: str | None
    limit: int
    before: TelemetryCursor | None


def parse_events_query(
    device_id: str, *, since: str | None, until: str | None, name: str | None, limit: int, cursor: str | None
) -> EventQuery | BadParam:
    """Validate a listing request: the reason for a 400, or the query."""
    if not is_device_id(device_id):
        return BadParam(f"device id {device_id!r} does not match {DEVICE_ID_PATTERN}")
    since_at = parse_timestamp("since", since) if since is not None else None
    if isinstance(since_at, BadParam):
        return since_at
    until_at = parse_timestamp("until", until) if until is not None else None
    if isinstance(until_at, BadParam):
        return until_at
    if since_at is not None and until_at is not None and since_at > until_at:
        return BadParam(f"since ({since_at.isoformat()}) is after until ({until_at.isoformat()})")
    before = None
    if cursor is not None:
        decoded = decode_cursor(cursor)
        if decoded is None or isinstance(decoded, FormerCursor):
            return BadParam("cursor is not valid; pass next_cursor of the previous page unchanged")
        before = decoded
    return EventQuery(device_id, since_at, until_at, name, limit, before)
