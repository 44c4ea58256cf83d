"""Probe payloads."""

from __future__ import annotations

from typing import Literal

import msgspec


class Liveness(msgspec.Struct, frozen=True):
    """The process is up and serving requests."""

    status: Literal["ok"] = "ok"


class Check(msgspec.Struct, frozen=True, kw_only=True):
    """The outcome of probing one backend."""

    ok: bool
    duration_ms: float
    error: str | None = None


class Readiness(msgspec.Struct, frozen=True, kw_only=True):
    """`ready` when every backend answered; otherwise which one did not, and why."""

    status: Literal["ready", "unavailable"]
    checks: dict[str, Check]
