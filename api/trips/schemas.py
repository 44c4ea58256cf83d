"""Response payloads of trips, stops and idling: the items as the engine stores them (`models.trips`),
in pages."""

from __future__ import annotations

from datetime import datetime

import msgspec

from models.trips import Idle, Stop, Trip


class TripPage(msgspec.Struct, frozen=True, kw_only=True):
    """Trips in start order; pass `next_cursor` as `cursor` for the next page (null: no more)."""

    items: list[Trip]
    next_cursor: datetime | None


class StopPage(msgspec.Struct, frozen=True, kw_only=True):
    """Stops in start order; pass `next_cursor` as `cursor` for the next page (null: no more)."""

    items: list[Stop]
    next_cursor: datetime | None


class IdlePage(msgspec.Struct, frozen=True, kw_only=True):
    """Idle intervals in start order; pass `next_cursor` as `cursor` for the next page (null: no more)."""

    items: list[Idle]
    next_cursor: datetime | None
