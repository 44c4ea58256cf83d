"""The ingest report: per message (per NDJSON line), what the bridge stored, refused, or left unconfirmed."""

from __future__ import annotations

from typing import Literal

import msgspec

from models.state import PersistedRange

MessageStatus = Literal["stored", "partial", "rejected", "unconfirmed"]


class Refusal(msgspec.Struct, frozen=True, kw_only=True):
    """One refused sample (`index` set) or a message refused whole (`index` null), with the bridge's reason."""

    reason: str
    index: int | None = None
    seq: int | None = None
    boot: int | None = None


class MessageReport(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of one message.

    `stored`: the (boot, seq) ranges committed to PostgreSQL, as `[boot, first, last]` like the
    `persisted` topic. `unconfirmed`: samples (or the whole message) the bridge has not answered for in
    time: they may be stored already, or soon; sending them again is safe.
    """

    line: int
    status: MessageStatus
    stored: list[PersistedRange]
    rejected: list[Refusal]
    unconfirmed: int = 0


class IngestReport(msgspec.Struct, frozen=True, kw_only=True):
    """The answer to `POST /api/v1/ingest`: one entry per message, in the order of the body."""

    device_id: str
    messages: list[MessageReport]
    stored_samples: int
    rejected: int
    unconfirmed_messages: int
