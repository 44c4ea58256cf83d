"""Request and response payloads of the alerts domain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

import msgspec
from msgspec import Meta

COMMENT_MAX_CHARS: Final = 2000


class Comment(msgspec.Struct, frozen=True, kw_only=True):
    """An operator's note on an alert."""

    id: int
    author: str
    body: str
    created_at: datetime


class Alert(msgspec.Struct, frozen=True, kw_only=True):
    """One episode of one rule on one device (docs/rules.md#alerts).

    `started_at`, `raised_at` and a `cleared_at` set by the condition are device times; `state` is active,
    acknowledged, cleared, or retracted (a late sample showed the episode did not happen).
    """

    id: int
    rule_id: int
    rule_name: str
    device_id: str
    severity: str
    state: str
    message: str
    value: float | None
    started_at: datetime
    raised_at: datetime
    acknowledged_at: datetime | None
    acknowledged_by: str | None
    cleared_at: datetime | None
    clear_reason: str | None
    cleared_by: str | None
    updated_at: datetime
    comments: list[Comment] = []


class AlertPage(msgspec.Struct, frozen=True, kw_only=True):
    """Alerts, newest first; pass `next_cursor` as `cursor` for the next page (null: no more)."""

    items: list[Alert]
    next_cursor: int | None


class AlertAction(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """An acknowledgement or a clear, with an optional comment."""

    comment: Annotated[str, Meta(min_length=1, max_length=COMMENT_MAX_CHARS)] | None = None


class CommentPost(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A comment on an alert."""

    body: Annotated[str, Meta(min_length=1, max_length=COMMENT_MAX_CHARS)]
