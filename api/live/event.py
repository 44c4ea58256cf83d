"""One device event as read from the live stream: delivered to every connection that selected its device,
each one, in order (never conflated, unlike state updates)."""

from __future__ import annotations

from dataclasses import dataclass, field

from api.live.cursor import StreamId, stream_id
from api.live.schemas import SERVER_MESSAGES, EventMessage
from models.events import StoredEvent


@dataclass(slots=True)
class LiveEvent:
    """A stored event of `device_id`; `cursor` is its stream entry id."""

    device_id: str
    event: StoredEvent
    cursor: str
    _message: bytes | None = field(default=None, repr=False, compare=False)

    @property
    def position(self) -> StreamId:
        """Its place in the stream."""
        return stream_id(self.cursor)

    def message(self) -> bytes:
        """The `event` message, encoded once and shared by every connection that sends it."""
        if self._message is None:
            self._message = SERVER_MESSAGES.encode(EventMessage(self.device_id, self.event))
        return self._message
