"""The bounded, conflating send buffer of one WebSocket connection."""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Final

from api.live.cursor import StreamId
from api.live.update import LiveUpdate

MAX_PENDING_DEVICES: Final = 10_000
MAX_QUEUED_MESSAGES: Final = 10_000  # unsent device events of one connection; more: too slow, overflowed


@dataclass(frozen=True, slots=True)
class Batch:
    """What the sender writes next: control messages first (snapshots, replays, acks), then updates,
    each with the cursor to send it with."""

    control: list[bytes]
    updates: list[tuple[LiveUpdate, str]]
    overflowed: bool


def resume_points(updates: list[LiveUpdate]) -> list[tuple[LiveUpdate, str]]:
    """Order updates by their oldest entry and give each the cursor a client may resume from after it.

    Unconflated, that is the update's own entry id. Conflated (a slow client), an update may fold in
    entries older than another update still to come; its cursor is then held back to just before that
    update's oldest entry, so a client that disconnects mid-batch and resumes misses nothing (it may
    see a few conflated changes again, which the newer-wins rule makes harmless).
    """
    ordered = sorted(updates, key=lambda update: update.first)
    out: list[tuple[LiveUpdate, str]] = []
    newest: StreamId | None = None
    for n, update in enumerate(ordered):
        newest = update.last if newest is None or update.last > newest else newest
        point = newest
        if n + 1 < len(ordered):
            before_next = ordered[n + 1].first.previous()
            point = min(point, before_next)
        out.append((update, str(point)))
    return out


class Outbox:
    """Pending messages of one connection: at most one update per device and kind, newer changes merged in.

    `offer` never blocks and never grows past `max_pending_devices` keys: a client that reads slower
    than its devices change receives fewer, fuller updates instead of a backlog. If more are pending
    than that, the outbox marks itself overflowed and the connection is closed, so the client
    reconnects and resumes; nothing is dropped silently.

    While `held` (a resume replay is being sent as control messages) updates stay pending, so that
    they follow the replay in stream order.
    """

    def __init__(self, max_pending_devices: int = MAX_PENDING_DEVICES, max_queued: int = MAX_QUEUED_MESSAGES) -> None:
        self._max_pending_devices = max_pending_devices
        self._max_queued = max_queued
        self._updates: dict[tuple[str, str], LiveUpdate] = {}
        self._control: list[bytes] = []
        self._queued: list[bytes] = []  # messages of the stream that arrived while held
        self._ready = asyncio.Event()
        self._control_sent = asyncio.Event()
        self._control_sent.set()
        self.held = False
        self.overflowed = False
        self.conflated = 0
        """Updates folded into a pending one: how far this client lags behind, for logs and tests."""

    def offer(self, update: LiveUpdate) -> None:
        """Queue a device's update, merging it into the one of its kind already pending for that device."""
        key = (update.device_id, update.kind)
        pending = self._updates.get(key)
        if pending is not None:
            self._updates[key] = pending.followed_by(update)
            self.conflated += 1
        elif len(self._updates) >= self._max_pending_devices:
            self.overflowed = True
        else:
            self._updates[key] = update
        if not self.held:
            self._ready.set()

    def push(self, message: bytes) -> None:
        """Queue a control message; these are never conflated or dropped, and go before updates."""
        self._control.append(message)
        self._control_sent.clear()
        self._ready.set()

    def queue(self, message: bytes) -> None:
        """Queue a stream message that must not be conflated (a device event): sent in turn like a control
        message, but while `held` it waits behind the replay. A client with more than `max_queued` unsent
        is too slow: the outbox overflows and the connection is closed, to be resumed, as for updates."""
        if len(self._control) + len(self._queued) >= self._max_queued:
            self.overflowed = True
            self._ready.set()
        elif self.held:
            self._queued.append(message)
        else:
            self.push(message)

    def hold(self) -> None:
        """Keep updates pending (conflating) until `release`."""
        self.held = True

    def release(self) -> None:
        """Send pending updates again."""
        self.held = False
        queued, self._queued = self._queued, []
        for message in queued:
            self.push(message)
        if self._updates:
            self._ready.set()

    def forget(self, device_ids: Iterable[str]) -> None:
        """Drop pending updates of devices the client unsubscribed from."""
        gone = set(device_ids)
        self._updates = {key: update for key, update in self._updates.items() if key[0] not in gone}

    def pending_devices(self) -> list[str]:
        """Devices with an update waiting to be sent."""
        return list(dict.fromkeys(device for device, _ in self._updates))

    @property
    def pending(self) -> int:
        """Updates waiting (at most one per device and kind)."""
        return len(self._updates)

    @property
    def idle(self) -> bool:
        """Nothing pending, held or unsent: every update offered so far reached the socket."""
        return (
            not self._updates
            and not self._control
            and not self._queued
            and not self.held
            and self._control_sent.is_set()
        )

    async def take(self) -> Batch:
        """Wait until something is pending, then hand all of it over (while held: control only)."""
        await self._ready.wait()
        self._ready.clear()
        overflowed = self.overflowed
        if self.held:
            batch = Batch(self._control, [], overflowed)
        else:
            batch = Batch(self._control, resume_points(list(self._updates.values())), overflowed)
            self._updates = {}
        self._control = []
        return batch

    def sent(self) -> None:
        """The sender wrote the last batch: wake whoever waits for its control messages."""
        if not self._control:
            self._control_sent.set()

    async def control_sent(self) -> None:
        """Wait until every control message pushed so far was written to the socket."""
        await self._control_sent.wait()
