"""What a telemetry history request asks for, validated: parameters in, a query or the reason out."""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Final

from api.telemetry.cursor import TelemetryCursor, decode_cursor
from models.telemetry import METRIC_COLUMNS
from models.topics import DEVICE_ID_PATTERN, is_device_id

POSITION: Final = "position"
SELECTABLE: Final = (*METRIC_COLUMNS, POSITION)
DEFAULT_WINDOW: Final = timedelta(hours=1)
LIMIT_DEFAULT: Final = 1000
LIMIT_MAX: Final = 10_000

# A `+` in a query string decodes to a space: "…T10:00:00 01:00" meant "+01:00".
_SPACE_FOR_PLUS: Final = re.compile(r" (\d{2}(?::?\d{2})?)$")


@dataclass(frozen=True, slots=True)
class TelemetryQuery:
    """Rows of `device_id` with `start <= ts < end`, after `after`, at most `limit`, of `metric` only."""

    device_id: str
    start: datetime
    end: datetime
    metric: str | None
    limit: int
    after: TelemetryCursor | None


@dataclass(frozen=True, slots=True)
class BadParam:
    """A request parameter that cannot be served, and what it should look like."""

    reason: str


def parse_timestamp(name: str, text: str) -> datetime | BadParam:
    """An ISO-8601 timestamp with a time zone (`Z` or an offset)."""
    candidate = _SPACE_FOR_PLUS.sub(r"+\1", text.strip())
    try:
        value = datetime.fromisoformat(candidate)
    except ValueError:
        return BadParam(f"{name}={text!r} is not an ISO-8601 timestamp, e.g. 2026-11-25T10:00:00Z")
    if value.tzinfo is None:
        return BadParam(f"{name}={text!r} has no time zone; add Z or an offset such as %2B01:00")
    return value


def parse_query(
    device_id: str,
    *,
    start: str | None,
    end: str | None,
    metric: str | None,
    limit: int,
    cursor: str | None,
    now: datetime,
) -> TelemetryQuery | BadParam:
    """Validate a history request; a missing window is the hour before `to` (default: now)."""
    if not is_device_id(device_id):
        return BadParam(f"device id {device_id!r} does not match {DEVICE_ID_PATTERN}")
    end_at = now if end is None else parse_timestamp("to", end)
    if isinstance(end_at, BadParam):
        return end_at
    start_at = end_at - DEFAULT_WINDOW if start is None else parse_timestamp("from", start)
    if isinstance(start_at, BadParam):
        return start_at
    if start_at > end_at:
        return BadParam(f"from ({start_at.isoformat()}) is after to ({end_at.isoformat()})")
    if metric is not None and metric not in SELECTABLE:
        return BadParam(f"unknown metric {metric!r}; expected one of: {', '.join(SELECTABLE)}")
    after = None
    if cursor is not None:
        after = decode_cursor(cursor)
        if after is None:
            return BadParam("cursor is not valid; pass next_cursor of the previous page unchanged")
    return TelemetryQuery(device_id, start_at, end_at, metric, limit, after)
