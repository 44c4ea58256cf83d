"""Commands to devices: the catalogue of what each kind of device obeys, the lifecycle, and the wire types.

Pure: checked by the API before a command is stored, obeyed by the simulator, documented by the AsyncAPI
document. Lifecycle (docs/commands.md): queued → sent → received → succeeded | failed, or expired or
cancelled. A state only moves forward (`STATE_RANK`); a terminal state never changes again.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final, Literal

import msgspec

CommandState = Literal["queued", "sent", "received", "succeeded", "failed", "expired", "cancelled"]
AckStatus = Literal["received", "succeeded", "failed", "rejected", "expired"]

TERMINAL: Final[frozenset[str]] = frozenset({"succeeded", "failed", "expired", "cancelled"})
# Forward only: an acknowledgement arriving out of order ("succeeded" before "received") never moves back.
STATE_RANK: Final[dict[str, int]] = {
    "queued": 0,
    "sent": 1,
    "received": 2,
    "succeeded": 3,
    "failed": 3,
    "expired": 3,
    "cancelled": 3,
}
# What the device's word on `cmd/ack` makes of the command: `rejected` (it does not know or cannot run
# it) is a failure; `expired` means it arrived after its `expires_at` by the device's clock.
ACK_STATE: Final[dict[str, CommandState]] = {
    "received": "received",
    "succeeded": "succeeded",
    "failed": "failed",
    "rejected": "failed",
    "expired": "expired",
}
# The conflict target of `command_events`' one-row-per-state rule (models/migrations/0023_commands.sql).
TRANSITION_KEY: Final = "(command_id, state) WHERE state <> 'progress'"
VEHICLE_KINDS: Final = frozenset({"truck", "van", "car", "bus"})
NAME_MAX_CHARS: Final = 64
RESULT_MAX_BYTES: Final = 4096


@dataclass(frozen=True, slots=True)
class Arg:
    """One argument a command takes."""

    name: str
    type: type[int] | type[float] | type[str] | type[bool]
    minimum: float | None = None
    maximum: float | None = None
    required: bool = True
    max_chars: int = 200


@dataclass(frozen=True, slots=True)
class CommandSpec:
    """A command the product knows: which kinds of device obey it, its arguments, and whether it is
    dangerous (never queued for a device that is not online right now)."""

    name: str
    description: str
    args: tuple[Arg, ...] = ()
    kinds: frozenset[str] | None = None  # None: every kind
    dangerous: bool = False
    # Made by the server only (its arguments name a download it signed): refused from the generic route.
    internal: bool = False

    def applies_to(self, kind: str) -> bool:
        """True when a device of `kind` obeys this command."""
        return self.kinds is None or kind in self.kinds


CATALOGUE: Final[dict[str, CommandSpec]] = {
    spec.name: spec
    for spec in (
        CommandSpec("ping", "Answer at once: proves the path to the device and back."),
        CommandSpec(
            "set_report_interval",
            "Report telemetry every `interval_s` seconds from now on.",
            (Arg("interval_s", int, minimum=1, maximum=3600),),
        ),
        CommandSpec("reboot", "Restart: the device reconnects with a new boot number and seq from zero."),
        CommandSpec(
            "immobilise",
            "Stop the vehicle's engine from starting again; a moving vehicle is brought to a stop first.",
            kinds=VEHICLE_KINDS,
            dangerous=True,
        ),
        CommandSpec("mobilise", "Release the immobiliser.", kinds=VEHICLE_KINDS, dangerous=True),
        CommandSpec("unlock", "Unlock the doors.", kinds=VEHICLE_KINDS, dangerous=True),
        CommandSpec(
            "update_firmware",
            "Download the image at `url`, check its SHA-256, install it and restart into `version`; "
            "sent by `POST /api/v1/devices/{id}/firmware-update` (docs/ota.md).",
            (
                Arg("image_id", int, minimum=1),
                Arg("version", str, max_chars=64),
                Arg("sha256", str, max_chars=64),
                Arg("size", int, minimum=1),
                Arg("url", str, max_chars=2000),
            ),
            internal=True,
        ),
    )
}


def check_command(kind: str, name: str, args: dict[str, Any], *, internal: bool = False) -> CommandSpec | str:
    """The command's spec, or why a device of `kind` cannot be sent `name` with `args` (by a caller of
    the generic route unless `internal`)."""
    spec = CATALOGUE.get(name)
    if spec is None:
        return (
            f"unknown command {name!r}; known: {', '.join(sorted(n for n, s in CATALOGUE.items() if not s.internal))}"
        )
    if spec.internal and not internal:
        return f"{name!r} is sent by its own route, not as a plain command (docs/commands.md#the-catalogue)"
    if not spec.applies_to(kind):
        return f"a device of kind {kind!r} does not obey {name!r} (only {', '.join(sorted(spec.kinds or ()))})"
    known = {arg.name for arg in spec.args}
    unknown = sorted(set(args) - known)
    if unknown:
        return f"{name!r} takes no argument {unknown[0]!r}" + (
            f" (it takes {', '.join(sorted(known))})" if known else ""
        )
    for arg in spec.args:
        if arg.name not in args:
            if arg.required:
                return f"{name!r} needs the argument {arg.name!r}"
            continue
        problem = _arg_problem(arg, args[arg.name])
        if problem is not None:
            return f"argument {arg.name!r} of {name!r}: {problem}"
    return spec


def _arg_problem(arg: Arg, value: Any) -> str | None:
    # bool is an int in Python: a JSON `true` must not pass for an integer.
    if arg.type is int and (isinstance(value, bool) or not isinstance(value, int)):
        return f"must be an integer, not {_json_type(value)}"
    if arg.type is float and (
        isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value)
    ):
        return f"must be a finite number, not {_json_type(value)}"
    if arg.type is str:
        if not isinstance(value, str):
            return f"must be a string, not {_json_type(value)}"
        if len(value) > arg.max_chars:
            return f"must be at most {arg.max_chars} characters"
        return None
    if arg.type is bool:
        return None if isinstance(value, bool) else f"must be true or false, not {_json_type(value)}"
    if arg.minimum is not None and value < arg.minimum:
        return f"must be at least {arg.minimum:g}"
    if arg.maximum is not None and value > arg.maximum:
        return f"must be at most {arg.maximum:g}"
    return None


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return "a number"
    if isinstance(value, str):
        return "a string"
    if isinstance(value, list):
        return "an array"
    return "an object"


def resolve_expiry(
    now: datetime, *, expires_at: datetime | None, expires_in_s: int | None, default_s: int, max_s: int
) -> datetime | str:
    """When the command expires, or why the asked expiry is refused (past, too far, or given twice)."""
    if expires_at is not None and expires_in_s is not None:
        return "give either expires_at or expires_in_s, not both"
    if expires_at is not None:
        if expires_at.tzinfo is None:
            return "expires_at needs a time zone"
        if expires_at <= now:
            return f"expires_at {expires_at.isoformat()} is in the past"
        if expires_at - now > timedelta(seconds=max_s):
            return f"expires_at is more than {max_s} s away (commands.max_expiry_s)"
        return expires_at
    seconds = default_s if expires_in_s is None else expires_in_s
    if seconds < 1:
        return "expires_in_s must be at least 1"
    if seconds > max_s:
        return f"expires_in_s is more than {max_s} s (commands.max_expiry_s)"
    return now + timedelta(seconds=seconds)


def expiry_interval_s(expires_at: datetime, now: datetime) -> int:
    """The MQTT 5 Message Expiry Interval for a command published at `now`: whole seconds, rounded down
    so that no broker holds it past `expires_at`; at least 1 (0 would mean no expiry)."""
    return max(1, math.floor((expires_at - now).total_seconds()))


def advance(current: str, reported: str) -> str:
    """The state after `reported` reaches a command in `current`: forward only, terminal states stay."""
    if current in TERMINAL or STATE_RANK[reported] <= STATE_RANK[current]:
        return current
    return reported


def is_command_id(value: str) -> bool:
    """True when `value` is a command id as the product makes them (a UUID in its canonical text)."""
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


class CommandMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A command to a device on `fleet/v1/{id}/cmd` (QoS 1, with a Message Expiry Interval).

    The device checks `expires_at` against its own clock as well, answers `expired` when it is past,
    and obeys a command id once even when the message comes again.
    """

    id: str
    name: str
    args: dict[str, Any] = {}
    expires_at: datetime


class CommandAck(msgspec.Struct, frozen=True, kw_only=True):
    """A device's answer on `fleet/v1/{id}/cmd/ack`: `received` as soon as it has the command, then
    `succeeded` or `failed` (with `result`), or `rejected` (unknown or impossible: a failure) or `expired`
    (it arrived too late by the device's clock) instead."""

    id: str
    status: AckStatus
    result: dict[str, Any] = {}
    ts: datetime | None = None  # the device's time of this answer
