"""Response payloads of the presence timeline."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

import msgspec


class PresenceInterval(msgspec.Struct, frozen=True, kw_only=True):
    """One stretch of time with one presence: `from <= t < to`."""

    presence: Literal["online", "offline"]
    source: Literal["status", "heartbeat"] | None
    """What decided it: the device's retained status or Last Will, or silence past the heartbeat timeout."""
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")


class PresenceTimeline(msgspec.Struct, frozen=True, kw_only=True):
    """A device's presence over a window, oldest first; time before the first known change is not covered."""

    device_id: str
    start: datetime = msgspec.field(name="from")
    end: datetime = msgspec.field(name="to")
    intervals: list[PresenceInterval]
    truncated: bool
    """True when the window held more changes than one answer lists: the last interval ends at the first
    change left out; ask again from there."""
