"""Routes each live update to the connections whose selection matches it."""

from __future__ import annotations

import asyncio
import contextlib
from dataclasses import dataclass, field
from typing import Final

from api.live.cursor import START, StreamId
from api.live.directory import GroupDirectory
from api.live.event import LiveEvent
from api.live.outbox import Outbox
from api.live.selection import BBox, Selection, moved_to
from api.live.spatial import BoxIndex
from api.live.update import LiveUpdate

DEFAULT_HEARTBEAT_S: Final = 15.0


@dataclass(eq=False, slots=True)
class Subscriber:
    """One connection as the hub sees it: its outbox, selection and limits.

    `group_limit` (a group-limited API key) is checked on every delivery, whatever was selected.
    `floor` is the resume cursor: updates at or before it were replayed, or the client had them.
    """

    outbox: Outbox
    group_limit: str | None = None
    selection: Selection = field(default_factory=Selection)
    floor: StreamId = START


class LiveHub:
    """The subscriptions of one app instance, indexed so that an update only visits the connections that
    may want it: by device id, by group, every-device, and by box (`BoxIndex`)."""

    def __init__(self, directory: GroupDirectory, *, heartbeat_s: float = DEFAULT_HEARTBEAT_S) -> None:
        self.directory = directory
        self.heartbeat_s = heartbeat_s
        self.position: StreamId = START
        """The newest stream entry read by this instance (delivered or not)."""
        self._indexed: dict[Subscriber, tuple[frozenset[str], frozenset[str], frozenset[BBox]]] = {}
        self._by_device: dict[str, set[Subscriber]] = {}
        self._by_group: dict[str, set[Subscriber]] = {}
        self._everything: set[Subscriber] = set()
        self._boxes: BoxIndex[Subscriber] = BoxIndex()
        self._advanced = asyncio.Event()

    def advanced(self) -> None:
        """The reader moved `position` on: wake everyone waiting in `wait_beyond`."""
        waiters, self._advanced = self._advanced, asyncio.Event()
        waiters.set()

    async def wait_beyond(self, after: StreamId, timeout_s: float) -> None:
        """Return once this instance has read past `after`, or after `timeout_s` (whichever is first).

        Long polls wait here, holding no Redis or database connection while they wait.
        """
        if self.position > after:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._advanced.wait(), timeout_s)

    def attach(self, subscriber: Subscriber) -> None:
        """Start routing to `subscriber` according to its selection; call again after changing it."""
        self.detach(subscriber)
        selection = subscriber.selection
        if selection.empty:
            return
        # The keys are remembered, so that detaching costs the connection's own keys, not the hub's.
        self._indexed[subscriber] = (
            frozenset(selection.devices),
            frozenset(selection.groups),
            frozenset(selection.boxes),
        )
        for device_id in selection.devices:
            self._by_device.setdefault(device_id, set()).add(subscriber)
        for group in selection.groups:
            self._by_group.setdefault(group, set()).add(subscriber)
        if selection.everything:
            self._everything.add(subscriber)
        for box, members in selection.boxes.items():
            self._boxes.add(subscriber, box, members)

    def detach(self, subscriber: Subscriber) -> None:
        """Stop routing to `subscriber` (a closed connection, or before re-indexing it)."""
        keys = self._indexed.pop(subscriber, None)
        if keys is None:
            return
        devices, groups, boxes = keys
        for index, names in ((self._by_device, devices), (self._by_group, groups)):
            for name in names:
                subscribers = index.get(name)
                if subscribers is not None:
                    subscribers.discard(subscriber)
                    if not subscribers:
                        del index[name]
        self._everything.discard(subscriber)
        for box in boxes:
            self._boxes.remove(subscriber, box)

    def publish(self, update: LiveUpdate) -> None:
        """Offer `update` to every connection whose selection matches it and whose limits allow it, once."""
        for subscriber in self._targets(update.device_id, moved_to(update)):
            if update.last <= subscriber.floor:
                continue  # a resumed client already has it (this instance's reader lagged behind)
            subscriber.outbox.offer(update)

    def publish_alert(self, device_id: str, message: bytes) -> None:
        """Queue an alert change for every connection that selected its device: as a control message,
        so that no change of an alert is ever conflated away behind a later one."""
        for subscriber in self._targets(device_id, None):
            subscriber.outbox.push(message)

    def publish_event(self, event: LiveEvent) -> None:
        """Queue a device event for every connection that selected its device: each event is sent, never
        conflated, in stream order behind a resume replay in progress."""
        position = event.position
        for subscriber in self._targets(event.device_id, None):
            if position > subscriber.floor:  # else a resumed client already has it
                subscriber.outbox.queue(event.message())

    def _targets(self, device_id: str, moved: tuple[float, float] | None) -> set[Subscriber]:
        group = self.directory.group_of(device_id)
        targets = set(self._everything)
        targets.update(self._by_device.get(device_id, ()))
        if group is not None:
            targets.update(self._by_group.get(group, ()))
        targets.update(self._boxes.route(device_id, moved))
        return {s for s in targets if s.group_limit is None or s.group_limit == group}

    @property
    def subscribers(self) -> frozenset[Subscriber]:
        """The connections subscribed to anything (for logs and tests)."""
        return frozenset(self._indexed)

    @property
    def connections(self) -> int:
        """Connections subscribed to anything (for logs and tests)."""
        return len(self._indexed)
