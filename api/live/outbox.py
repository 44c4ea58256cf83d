"""The bounded, conflating send buffer of one WebSocket connection."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from api.live.update import LiveUpdate

MAX_PENDING_DEVICES: Final = 10_000


@dataclass(frozen=True, slots=True)
class Batch:
    """What the sender writes next: control messages first (snapshots, acks), then state updates."""

    control: list[bytes]
    updates: list[LiveUpdate]
    overflowed: bool


class Outbox:
    """Pending messages of one connection: at most one update per device, newer changes merged into it.

    `offer` never blocks and never grows past `max_pending_devices` devices: a client that reads slower
    than its devices change receives fewer, fuller updates instead of a backlog. If more distinct devices
    are pending than that, the outbox marks itself overflowed and the connection is closed, so the client
    reconnects and starts again from snapshots; nothing is dropped silently.
    """

    def __init__(self, max_pending_devices: int = MAX_PENDING_DEVICES) -> None:
        self._max_pending_devices = max_pending_devices
        self._updates: dict[str, LiveUpdate] = {}
        self._control: list[bytes] = []
        self._ready = asyncio.Event()
        self._control_sent = asyncio.Event()
        self._control_sent.set()
        self.overflowed = False
        self.conflated = 0
        """Updates folded into a pending one: how far this client lags behind, for logs and tests."""

    def offer(self, update: LiveUpdate) -> None:
        """Queue a device's update, merging it into the one already pending for that device."""
        pending = self._updates.get(update.device_id)
        if pending is not None:
            self._updates[update.device_id] = pending.followed_by(update)
            self.conflated += 1
        elif len(self._updates) >= self._max_pending_devices:
            self.overflowed = True
        else:
            self._updates[update.device_id] = update
        self._ready.set()

    def push(self, message: bytes) -> None:
        """Queue a control message; these are never conflated or dropped, and go before updates."""
        self._control.append(message)
        self._control_sent.clear()
        self._ready.set()

    def forget(self, device_ids: Iterable[str]) -> None:
        """Drop pending updates of devices the client unsubscribed from."""
        for device_id in device_ids:
            self._updates.pop(device_id, None)

    def pending_devices(self) -> list[str]:
        """Devices with an update waiting to be sent."""
        return list(self._updates)

    async def take(self) -> Batch:
        """Wait until something is pending, then hand all of it over."""
        await self._ready.wait()
        self._ready.clear()
        batch = Batch(self._control, list(self._updates.values()), self.overflowed)
        self._control = []
        self._updates = {}
        return batch

    def sent(self) -> None:
        """The sender wrote the last batch: wake whoever waits for its control messages."""
        if not self._control:
            self._control_sent.set()

    async def control_sent(self) -> None:
        """Wait until every control message pushed so far was written to the socket."""
        await self._control_sent.wait()
