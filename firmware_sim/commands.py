"""What a simulated device does with the commands it receives, as firmware would: obey an id once, refuse
what arrives after its `expires_at` by the device's own clock, and keep a record of what it got.

Pure apart from the random source of the flaky mode: the clock is an argument.
"""

from __future__ import annotations

import random
import threading
from collections import OrderedDict
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final, Literal

from models.commands import AckStatus, CommandMessage

SEEN_KEPT: Final = 1000  # ids remembered for deduplication: far more than a device is sent within an expiry

Receipt = Literal["new", "expired", "again"]


@dataclass(slots=True)
class ReceivedCommand:
    """One command as the device received it, and the last answer it gave."""

    id: str
    name: str
    args: dict[str, Any]
    expires_at: datetime
    received_at: datetime
    status: AckStatus
    result: dict[str, Any]
    deliveries: int = 1


class CommandBook:
    """The device's record of commands: which ids it has seen and what it answered (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._seen: OrderedDict[str, ReceivedCommand] = OrderedDict()
        self._all: list[ReceivedCommand] = []

    def receive(self, message: CommandMessage, now: datetime) -> tuple[Receipt, ReceivedCommand]:
        """Note a delivery: `new` (obey it), `again` (a repeat: answer as before, obey nothing) or
        `expired` (too late by this device's clock: refuse it)."""
        with self._lock:
            known = self._seen.get(message.id)
            if known is not None:
                known.deliveries += 1
                return "again", known
            late = message.expires_at <= now
            record = ReceivedCommand(
                id=message.id,
                name=message.name,
                args=dict(message.args),
                expires_at=message.expires_at,
                received_at=now,
                status="expired" if late else "received",
                result={},
            )
            self._seen[message.id] = record
            self._all.append(record)
            while len(self._seen) > SEEN_KEPT:
                self._seen.popitem(last=False)
            return ("expired" if late else "new"), record

    def answered(self, command_id: str, status: AckStatus, result: dict[str, Any]) -> None:
        """Note the answer given to a command."""
        with self._lock:
            record = self._seen.get(command_id)
            if record is not None:
                record.status, record.result = status, result

    def received(self) -> list[ReceivedCommand]:
        """Every command received, in order (a repeat counted in `deliveries`, not listed again)."""
        with self._lock:
            return list(self._all)


@dataclass(frozen=True, slots=True)
class FlakyAcks:
    """A device with a bad link or bad firmware: each answer is lost with probability `loss`, and sent
    `delay_s` late otherwise."""

    loss: float = 0.0
    delay_s: float = 0.0
    seed: int | str = 0

    def __post_init__(self) -> None:
        if not 0.0 <= self.loss <= 1.0:
            raise ValueError(f"loss must be within 0 … 1, not {self.loss}")
        if self.delay_s < 0:
            raise ValueError(f"delay_s must not be negative, not {self.delay_s}")

    def plan(self, rng: random.Random) -> float | None:
        """When to send an answer (seconds from now), or None to lose it."""
        if self.loss > 0 and rng.random() < self.loss:
            return None
        return self.delay_s
