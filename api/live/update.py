"""One live update of one device, as read from the stream and handed to every subscribed connection."""

from __future__ import annotations

from dataclasses import dataclass, field

from api.live.schemas import SERVER_MESSAGES, StateMessage
from models.state import DeviceState


def _later(a: DeviceState, b: DeviceState) -> DeviceState:
    """Fold `b`'s changed fields over `a`'s. The stream is ordered and the bridge only publishes fields
    that won its newer-wins merge, so the later entry's value of a field is the newer one."""
    if a.ts is None:
        ts = b.ts
    elif b.ts is None:
        ts = a.ts
    else:
        ts = max(a.ts, b.ts)
    return DeviceState(
        device_id=b.device_id,
        ts=ts,
        position=b.position if b.position is not None else a.position,
        metrics={**a.metrics, **b.metrics},
        aggregates={**a.aggregates, **b.aggregates},
        quality=b.quality if b.quality is not None else a.quality,
        presence=b.presence if b.presence is not None else a.presence,
    )


@dataclass(slots=True)
class LiveUpdate:
    """The changed state fields of one device and the stream entry id (`cursor`) they came from."""

    device_id: str
    changes: DeviceState
    cursor: str
    _message: str | None = field(default=None, repr=False, compare=False)

    def message(self) -> str:
        """The `state` message for this update, encoded once and shared by every connection."""
        if self._message is None:
            self._message = SERVER_MESSAGES.encode(StateMessage(self.device_id, self.changes, self.cursor)).decode()
        return self._message

    def followed_by(self, newer: LiveUpdate) -> LiveUpdate:
        """This update and a newer one of the same device, conflated into one."""
        return LiveUpdate(self.device_id, _later(self.changes, newer.changes), newer.cursor)
