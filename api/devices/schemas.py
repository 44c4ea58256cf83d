"""Response payloads of the devices domain. A device's state is `models.state.DeviceState` itself."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class Device(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the device registry; the bridge inserts it when a device first appears."""

    id: str
    kind: str
    name: str | None
    group: str | None
    metadata: dict[str, Any]
    created_at: datetime
    last_seen: datetime | None
    disabled: bool


class DevicePage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of devices ordered by id; pass `next_cursor` as `cursor` for the next page (null: no more)."""

    items: list[Device]
    next_cursor: str | None
