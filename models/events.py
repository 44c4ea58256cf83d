"""Device events, presence status and commands as they travel over MQTT."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta

from models.telemetry import Boot, Seq, Timestamp

EventName = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$(?!\n)")]  # see MetricName


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """A discrete event on `fleet/v1/{id}/events` (ignition, harsh braking, door, …)."""

    seq: Seq
    ts: Timestamp
    name: EventName
    boot: Boot = 0
    data: dict[str, Any] = {}


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """Retained presence on `fleet/v1/{id}/status`: `online` on connect, `offline` as the Last Will."""

    state: Literal["online", "offline"]
    ts: datetime | None = None


class Command(msgspec.Struct, frozen=True, kw_only=True):
    """A command to a device on `fleet/v1/{id}/cmd`."""

    id: str
    name: str
    args: dict[str, Any] = {}
    expires_at: datetime | None = None


class CommandAck(msgspec.Struct, frozen=True, kw_only=True):
    """A device's answer on `fleet/v1/{id}/cmd/ack`."""

    id: str
    status: Literal["accepted", "done", "failed", "rejected"]
    result: dict[str, Any] = {}
