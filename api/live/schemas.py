"""The protocol of `/api/v1/live`: WebSocket messages (JSON text frames) and the polling answer.

Client → server (`action`):

* `subscribe` with exactly one of `devices` (ids; `"*"` for every device), `group` (a registry group) or
  `bbox` (`[min_lon, min_lat, max_lon, max_lat]`: devices whose last position is inside);
* `unsubscribe` with the same selector as the subscription it ends;
* `resume` with `cursor`: later subscribe requests replay the stream after it instead of sending
  snapshots (the same as `?since=` on the URL);
* `auth` with `token`: a fresh access token of the same account, so the connection outlives the one
  it was opened with.

Server → client (`type`): `snapshot`, `subscribed`, `unsubscribed`, `state`, `presence`, `correction`,
`event`, `alert`, `reset`, `heartbeat`, `auth`, `error`; see docs/api.md for when each is sent.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

import msgspec
from msgspec import Meta

from api.alerts.schemas import Alert
from api.commands.schemas import Command
from models.events import StoredEvent
from models.state import DeviceState, PresenceState
from models.topics import DEVICE_ID_PATTERN

ALL_DEVICES: Final = "*"
MAX_DEVICES_PER_REQUEST: Final = 10_000
CURSOR_PATTERN: Final = r"^\d{1,20}-\d{1,20}$"
TOKEN_MAX_CHARS: Final = 8192

DeviceSelector = Annotated[str, Meta(pattern=rf"^(\*|{DEVICE_ID_PATTERN})$")]
DeviceSelection = Annotated[list[DeviceSelector], Meta(min_length=1, max_length=MAX_DEVICES_PER_REQUEST)]
GroupName = Annotated[str, Meta(min_length=1, max_length=64)]
Coordinates = Annotated[list[float], Meta(min_length=4, max_length=4)]
Cursor = Annotated[str, Meta(pattern=CURSOR_PATTERN)]


class Subscribe(msgspec.Struct, frozen=True, tag_field="action", tag="subscribe"):
    """Start receiving updates of a selection: snapshots first, or a replay after the resume cursor."""

    devices: DeviceSelection | None = None
    group: GroupName | None = None
    bbox: Coordinates | None = None


class Unsubscribe(msgspec.Struct, frozen=True, tag_field="action", tag="unsubscribe"):
    """Stop receiving updates of a selection, named as it was subscribed."""

    devices: DeviceSelection | None = None
    group: GroupName | None = None
    bbox: Coordinates | None = None


class Resume(msgspec.Struct, frozen=True, tag_field="action", tag="resume"):
    """Replay after `cursor` (the last one received) for the subscribe requests that follow."""

    cursor: Cursor


class Auth(msgspec.Struct, frozen=True, tag_field="action", tag="auth"):
    """A fresh access token for this connection (same account), before the current one expires."""

    token: Annotated[str, Meta(min_length=1, max_length=TOKEN_MAX_CHARS)]


ClientMessage = Subscribe | Unsubscribe | Resume | Auth


def selector_problem(request: Subscribe | Unsubscribe) -> str | None:
    """Why a (un)subscribe request does not name exactly one selector, or None."""
    named = [name for name in ("devices", "group", "bbox") if getattr(request, name) is not None]
    if len(named) != 1:
        return "name exactly one of devices, group or bbox"
    return None


class SnapshotMessage(msgspec.Struct, frozen=True, tag_field="type", tag="snapshot"):
    """A device's whole last-known state; `state` is null when Redis holds nothing for it."""

    device_id: str
    state: DeviceState | None


class StateMessage(msgspec.Struct, frozen=True, tag_field="type", tag="state"):
    """Changed fields of one device's state; `cursor` is where to resume after this message."""

    device_id: str
    changes: DeviceState
    cursor: str


class PresenceMessage(msgspec.Struct, frozen=True, tag_field="type", tag="presence"):
    """The device went online or offline."""

    device_id: str
    presence: PresenceState | None
    cursor: str


class CorrectionMessage(msgspec.Struct, frozen=True, tag_field="type", tag="correction"):
    """A late sample: older than the state held, so the state kept its newer values; each field of
    `values` carries the sample's own time, boot and seq."""

    device_id: str
    values: DeviceState
    cursor: str


class AlertMessage(msgspec.Struct, frozen=True, tag_field="type", tag="alert"):
    """A change of an alert of a selected device (`event`: raised, acknowledged, cleared, commented,
    reopened, retracted), with the alert as it is after the change. Never conflated: each change is sent."""

    event: str
    alert: Alert


class CommandUpdateMessage(msgspec.Struct, frozen=True, tag_field="type", tag="command"):
    """A transition of a command to a selected device (`state`: queued, sent, received, succeeded, failed,
    expired, cancelled, recorded `at`), with the command as it is now (which may be further on). Never
    conflated: each transition is sent."""

    state: str
    at: datetime
    command: Command


class EventMessage(msgspec.Struct, frozen=True, tag_field="type", tag="event"):
    """An event a selected device sent (`fleet/v1/{id}/events`), once stored. Never conflated: each event
    is sent. No cursor, like an alert: it is sent ahead of state updates still pending (older entries,
    conflated), so its own entry id would be no safe resume point. A client that resumes from an earlier
    cursor may be sent an event again: (boot, seq) tells."""

    device_id: str
    event: StoredEvent


class SubscribedMessage(msgspec.Struct, frozen=True, tag_field="type", tag="subscribed", omit_defaults=True):
    """A subscribe request took effect; its snapshots (or replay) were sent before this."""

    devices: list[str] | None = None
    group: str | None = None
    bbox: list[float] | None = None


class UnsubscribedMessage(msgspec.Struct, frozen=True, tag_field="type", tag="unsubscribed", omit_defaults=True):
    """An unsubscribe request took effect."""

    devices: list[str] | None = None
    group: str | None = None
    bbox: list[float] | None = None


class ResetMessage(msgspec.Struct, frozen=True, tag_field="type", tag="reset"):
    """The resume cursor is older than the stream keeps (or unknown to it): snapshots follow instead."""

    reason: str
    oldest: str | None


class HeartbeatMessage(msgspec.Struct, frozen=True, tag_field="type", tag="heartbeat"):
    """Sent when nothing else was for `api.live_heartbeat_s`; `cursor` is a safe resume point."""

    cursor: str | None


class AuthMessage(msgspec.Struct, frozen=True, tag_field="type", tag="auth"):
    """An `auth` request took effect: the connection now lasts until `expires_at` (RFC 3339, UTC)."""

    expires_at: str


class ErrorMessage(msgspec.Struct, frozen=True, tag_field="type", tag="error"):
    """The last client message was refused; the connection stays open."""

    message: str


class LivePage(msgspec.Struct, frozen=True):
    """The polling answer: matching updates after `since`, and where to continue.

    `updates` holds `state`, `presence`, `correction` and `event` messages as on the WebSocket, one per
    stream entry (never conflated). `reset` is true when `since` is older than the stream keeps: take
    snapshots (`GET /api/v1/devices/{id}/state`), then poll from `next_cursor`.
    """

    updates: list[msgspec.Raw]
    next_cursor: str
    reset: bool = False


CLIENT_MESSAGES: Final = msgspec.json.Decoder(ClientMessage)
SERVER_MESSAGES: Final = msgspec.json.Encoder()
