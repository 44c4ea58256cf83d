"""Response payloads of fleet state."""

from __future__ import annotations

import msgspec

from models.state import DeviceState


class FleetStatePage(msgspec.Struct, frozen=True, kw_only=True):
    """The last-known state of a page of devices, in id order.

    Registry devices without state in Redis are left out, so a page can hold fewer items than `limit`
    (even none) while `next_cursor` is set: follow it until it is null.
    """

    items: list[DeviceState]
    next_cursor: str | None
