"""Routes each live update to the outboxes of the connections subscribed to its device."""

from __future__ import annotations

from collections.abc import Iterable

from api.live.outbox import Outbox
from api.live.update import LiveUpdate


class LiveHub:
    """The subscriptions of one app instance: device id -> outboxes, plus those that want every device."""

    def __init__(self) -> None:
        self._by_device: dict[str, set[Outbox]] = {}
        self._everything: set[Outbox] = set()

    def subscribe(self, outbox: Outbox, device_ids: Iterable[str]) -> None:
        """Deliver updates of these devices to `outbox`."""
        for device_id in device_ids:
            self._by_device.setdefault(device_id, set()).add(outbox)

    def unsubscribe(self, outbox: Outbox, device_ids: Iterable[str]) -> None:
        """Stop delivering updates of these devices to `outbox`."""
        for device_id in device_ids:
            outboxes = self._by_device.get(device_id)
            if outboxes is None:
                continue
            outboxes.discard(outbox)
            if not outboxes:
                del self._by_device[device_id]

    def subscribe_all(self, outbox: Outbox) -> None:
        """Deliver updates of every device to `outbox`."""
        self._everything.add(outbox)

    def unsubscribe_all(self, outbox: Outbox) -> None:
        """Undo `subscribe_all`; subscriptions to named devices stay."""
        self._everything.discard(outbox)

    def detach(self, outbox: Outbox, device_ids: Iterable[str]) -> None:
        """Remove a closed connection's outbox everywhere it was subscribed."""
        self.unsubscribe_all(outbox)
        self.unsubscribe(outbox, device_ids)

    def publish(self, update: LiveUpdate) -> None:
        """Offer `update` to every outbox subscribed to its device, once each."""
        for outbox in self._everything:
            outbox.offer(update)
        for outbox in self._by_device.get(update.device_id, ()):
            if outbox not in self._everything:
                outbox.offer(update)

    @property
    def connections(self) -> int:
        """Outboxes subscribed to anything (for logs and tests)."""
        named = set().union(*self._by_device.values()) if self._by_device else set()
        return len(named | self._everything)
