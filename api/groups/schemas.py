"""Request and response payloads of the groups domain."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final

import msgspec
from msgspec import Meta

GROUP_DESCRIPTION_MAX_CHARS: Final = 1000


class Group(msgspec.Struct, frozen=True, kw_only=True):
    """A group: described (`created_at` set) or only named by its devices, with its member counts.

    `online` counts members whose last recorded presence is online and that are not disabled.
    """

    name: str
    description: str | None
    created_at: datetime | None
    updated_at: datetime | None
    devices: int
    online: int


class GroupPage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of groups ordered by name; pass `next_cursor` as `cursor` for the next page (null: no more)."""

    items: list[Group]
    next_cursor: str | None


class GroupPut(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What describes a group."""

    description: Annotated[str, Meta(max_length=GROUP_DESCRIPTION_MAX_CHARS)] | None = None
