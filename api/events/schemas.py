"""Response payloads of the event listing."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class EventItem(msgspec.Struct, frozen=True, kw_only=True):
    """One stored event: as the device sent it (`seq`, `ts`, `boot`, `name`, `data`) and when it arrived."""

    seq: int
    ts: datetime
    boot: int
    name: str
    data: dict[str, Any]
    received_at: datetime


class EventPage(msgspec.Struct, frozen=True, kw_only=True):
    """Events newest first, in (ts, boot, seq) order; pass `next_cursor` as `cursor` for the next page (null: no more)."""

    device_id: str
    items: list[EventItem]
    next_cursor: str | None
