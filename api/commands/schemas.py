"""Request and response payloads of the commands domain (docs/commands.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any

import msgspec
from msgspec import Meta

from models.commands import NAME_MAX_CHARS, CommandState


class CommandPost(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A command for a device: its name and arguments (`GET /api/v1/command-catalogue` lists them) and when
    it stops being worth sending — `expires_at`, or `expires_in_s` from now, or the configured default."""

    name: Annotated[str, Meta(min_length=1, max_length=NAME_MAX_CHARS)]
    args: dict[str, Any] = {}
    expires_at: datetime | None = None
    expires_in_s: Annotated[int, Meta(ge=1)] | None = None


class Transition(msgspec.Struct, frozen=True, kw_only=True):
    """One state the command reached: when the server recorded it and, for a device's answer, the device's
    own time and what it said."""

    state: str
    at: datetime
    device_ts: datetime | None = None
    detail: dict[str, Any] | None = None


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """A command and where it is in its lifecycle: queued → sent → received → succeeded | failed, or
    expired or cancelled. `dangerous` commands are only ever sent to a device online at the time."""

    id: str
    device_id: str
    name: str
    args: dict[str, Any]
    dangerous: bool
    state: CommandState
    created_at: datetime
    created_by: str
    expires_at: datetime
    sent_at: datetime | None
    attempts: int
    received_at: datetime | None
    finished_at: datetime | None
    result: dict[str, Any] | None
    updated_at: datetime
    transitions: list[Transition] = []


class CommandPage(msgspec.Struct, frozen=True, kw_only=True):
    """A device's commands, newest first; pass `next_cursor` as `cursor` for the next page (null: no more)."""

    items: list[Command]
    next_cursor: str | None


class ArgumentInfo(msgspec.Struct, frozen=True, kw_only=True):
    """One argument of a command."""

    name: str
    type: str
    required: bool
    minimum: float | None = None
    maximum: float | None = None


class CommandInfo(msgspec.Struct, frozen=True, kw_only=True):
    """A command devices obey: which kinds, its arguments, and whether it is dangerous."""

    name: str
    description: str
    dangerous: bool
    kinds: list[str] | None
    args: list[ArgumentInfo]
