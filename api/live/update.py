"""One live update of one device, as read from the stream and handed to every subscribed connection."""

from __future__ import annotations

from dataclasses import dataclass, field

from api.live.cursor import START, StreamId, stream_id
from api.live.schemas import SERVER_MESSAGES, CorrectionMessage, PresenceMessage, StateMessage
from models.state import LIVE_KIND_CORRECTION, LIVE_KIND_PRESENCE, DeviceState


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
    """Fields of one device from one or more stream entries of one kind (`state`, `presence`, `correction`).

    `cursor` is the newest entry folded in, `first` the oldest: a connection that fell behind receives
    several entries as one update, and the outbox uses both to tell the client a safe resume point.
    """

    device_id: str
    changes: DeviceState
    cursor: str
    kind: str = "state"
    first: StreamId = START
    last: StreamId = START
    _message: str | None = field(default=None, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.last == START:
            self.last = stream_id(self.cursor)
        if self.first == START:
            self.first = self.last

    def message(self, cursor: str | None = None) -> str:
        """The message for this update, encoded once and shared by every connection that sends it
        with its own cursor; `cursor` overrides it (an earlier resume point, see `Outbox.take`)."""
        if cursor is not None and cursor != self.cursor:
            return self._encode(cursor)
        if self._message is None:
            self._message = self._encode(self.cursor)
        return self._message

    def _encode(self, cursor: str) -> str:
        if self.kind == LIVE_KIND_PRESENCE:
            message: PresenceMessage | CorrectionMessage | StateMessage = PresenceMessage(
                self.device_id, self.changes.presence, cursor
            )
        elif self.kind == LIVE_KIND_CORRECTION:
            message = CorrectionMessage(self.device_id, self.changes, cursor)
        else:
            message = StateMessage(self.device_id, self.changes, cursor)
        return SERVER_MESSAGES.encode(message).decode()

    def followed_by(self, newer: LiveUpdate) -> LiveUpdate:
        """This update and a newer one of the same device and kind, conflated into one."""
        return LiveUpdate(
            self.device_id, _later(self.changes, newer.changes), newer.cursor, self.kind, self.first, newer.last
        )
