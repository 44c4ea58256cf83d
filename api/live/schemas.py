"""The WebSocket protocol of `/api/v1/live`: what a client sends and what it receives (JSON text frames).

Client → server: `{"action": "subscribe", "devices": ["truck-0001", ...]}` or the same with
`"unsubscribe"`; `"*"` stands for every device.

Server → client, each with a `type`:

* `snapshot` — a subscribed device's whole last-known state (`null` if none), sent on subscribe;
* `subscribed` / `unsubscribed` — the request took effect (after its snapshots);
* `state` — the fields of a device's state that changed since the last message for it, with the
  `cursor` (stream entry id) of the newest change folded in. Every field carries its own device time
  and `seq`: apply a field only when it is newer than the one held (a change may race a snapshot);
* `error` — the last client message was refused, and why; the connection stays open.
"""

from __future__ import annotations

from typing import Annotated, Final

import msgspec
from msgspec import Meta

from models.state import DeviceState
from models.topics import DEVICE_ID_PATTERN

ALL_DEVICES: Final = "*"
MAX_DEVICES_PER_REQUEST: Final = 10_000

DeviceSelector = Annotated[str, Meta(pattern=rf"^(\*|{DEVICE_ID_PATTERN})$")]
DeviceSelection = Annotated[list[DeviceSelector], Meta(min_length=1, max_length=MAX_DEVICES_PER_REQUEST)]


class Subscribe(msgspec.Struct, frozen=True, tag_field="action", tag="subscribe"):
    """Start receiving snapshots and changes of these devices (`"*"`: all)."""

    devices: DeviceSelection


class Unsubscribe(msgspec.Struct, frozen=True, tag_field="action", tag="unsubscribe"):
    """Stop receiving changes of these devices (`"*"`: undo a subscription to all)."""

    devices: DeviceSelection


ClientMessage = Subscribe | Unsubscribe


class SnapshotMessage(msgspec.Struct, frozen=True, tag_field="type", tag="snapshot"):
    """A device's whole last-known state; `state` is null when Redis holds nothing for it."""

    device_id: str
    state: DeviceState | None


class StateMessage(msgspec.Struct, frozen=True, tag_field="type", tag="state"):
    """Changed fields of one device's state; `cursor` is the stream entry id of the newest change."""

    device_id: str
    changes: DeviceState
    cursor: str


class SubscribedMessage(msgspec.Struct, frozen=True, tag_field="type", tag="subscribed"):
    """A subscribe request took effect; its snapshots were sent before this."""

    devices: list[str]


class UnsubscribedMessage(msgspec.Struct, frozen=True, tag_field="type", tag="unsubscribed"):
    """An unsubscribe request took effect."""

    devices: list[str]


class ErrorMessage(msgspec.Struct, frozen=True, tag_field="type", tag="error"):
    """The last client message was refused; the connection stays open."""

    message: str


CLIENT_MESSAGES: Final = msgspec.json.Decoder(ClientMessage)
SERVER_MESSAGES: Final = msgspec.json.Encoder()
