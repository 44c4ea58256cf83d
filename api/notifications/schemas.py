"""Response payloads of notification channels and the notification outbox (requests:
`models.notifications.ChannelSpec`)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec

from models.notifications import ChannelKind, NotificationState


class Channel(msgspec.Struct, frozen=True, kw_only=True):
    """A notification channel. A webhook's secret is shown once, in the answer to its creation."""

    id: int
    name: str
    kind: ChannelKind
    url: str | None
    recipients: list[str] | None
    created_at: datetime
    created_by: str | None
    secret: str | None = None


class ChannelPage(msgspec.Struct, frozen=True, kw_only=True):
    """Every channel in use, by id."""

    items: list[Channel]


class Notification(msgspec.Struct, frozen=True, kw_only=True):
    """One notification of one alert change to one channel, and how its delivery went."""

    id: int
    channel_id: int
    channel_name: str
    alert_id: int
    alert_event_id: int
    event: str
    state: NotificationState
    attempts: int
    next_attempt_at: datetime | None  # none once sent or dead
    last_error: str | None
    created_at: datetime
    sent_at: datetime | None
    payload: dict[str, Any]  # the AlertNotice delivered


class NotificationPage(msgspec.Struct, frozen=True, kw_only=True):
    """Notifications newest first; `next_cursor` continues the listing."""

    items: list[Notification]
    next_cursor: int | None
