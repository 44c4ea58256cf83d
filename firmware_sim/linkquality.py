"""How much a gateway sends over its link: quality levels, and the link speed it measures to choose one.

Levels (docs/gateways.md), chosen from the measured link speed:

| level | link above | sensors | window | precision | std |
|---|---|---|---|---|---|
| full | 1 Mbit/s | all | 1 s | as measured (6 decimals) | yes |
| standard | 100 kbit/s | all | 1 s | 2 decimals | yes |
| basic | 10 kbit/s | all | 5 s | 1 decimal | no |
| minimal | below | vibration, pressure, temperature | 30 s | 1 decimal | no |

Measuring: the gateway publishes the windows that closed in one tick together, as a *train* of messages
back to back. A link slower than the sender spaces their acknowledgements out by its own speed, so the
bytes of a train after its first message, divided by the time between its first and its last PUBACK, is a
sample of the link's speed (packet-train dispersion), whatever the round-trip time. The estimate is the
median of the latest samples, so one train delayed by something else moves nothing. A train acknowledged
faster than `MIN_DISPERSION_S` counts as that fast (a lower bound: loopback, or a link far faster than the
train needs). Pure: the caller passes the times.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass
from typing import Final

from models.telemetry import Aggregate


@dataclass(frozen=True, slots=True)
class QualityLevel:
    """What a gateway sends at one level."""

    name: str
    above_bps: float  # the level applies when the link is faster than this
    kinds: frozenset[str]
    window_s: float
    decimals: int
    std: bool

    def shape(self, summary: Aggregate) -> Aggregate:
        """`summary` at this level's precision (rounding keeps min ≤ avg ≤ max: it is monotonic)."""
        std = round(summary.std, self.decimals) if self.std and summary.std is not None else None
        return Aggregate(
            min=round(summary.min, self.decimals),
            max=round(summary.max, self.decimals),
            avg=round(summary.avg, self.decimals),
            count=summary.count,
            std=std,
        )


_ALL: Final = frozenset({"vibration", "pressure", "temperature", "flow", "level"})
FULL: Final = QualityLevel("full", 1_000_000, _ALL, 1.0, 6, std=True)
STANDARD: Final = QualityLevel("standard", 100_000, _ALL, 1.0, 2, std=True)
BASIC: Final = QualityLevel("basic", 10_000, _ALL, 5.0, 1, std=False)
MINIMAL: Final = QualityLevel("minimal", 0, frozenset({"vibration", "pressure", "temperature"}), 30.0, 1, std=False)
LEVELS: Final = (FULL, STANDARD, BASIC, MINIMAL)  # best first

SAMPLES_KEPT: Final = 3
MIN_DISPERSION_S: Final = 0.005
MIN_TRAIN_MESSAGES: Final = 3
# Before any measurement, and with no configured speed: assume a fast link (the first trains correct it).
UNKNOWN_LINK_BPS: Final = 10_000_000.0


def level_for(bps: float) -> QualityLevel:
    """The best level whose threshold the link speed `bps` (bits per second) exceeds."""
    for level in LEVELS:
        if bps > level.above_bps:
            return level
    return MINIMAL


@dataclass(slots=True)
class _Train:
    messages: int
    acked: int = 0
    first_ack_at: float | None = None
    last_ack_at: float = 0.0
    bytes_after_first: int = 0


class LinkMeter:
    """The link speed, estimated from the acknowledgements of message trains (see the module docstring)."""

    def __init__(self, *, initial_bps: float | None = None) -> None:
        self._samples: deque[float] = deque(maxlen=SAMPLES_KEPT)
        self._initial = initial_bps if initial_bps is not None else UNKNOWN_LINK_BPS
        self._trains: dict[int, _Train] = {}
        self._next_id = 0

    @property
    def estimate_bps(self) -> float:
        """The median of the latest samples; the configured (or assumed) speed before the first."""
        return statistics.median(self._samples) if self._samples else self._initial

    @property
    def samples(self) -> list[float]:
        """The latest samples, oldest first (bits per second)."""
        return list(self._samples)

    def train(self, messages: int) -> int | None:
        """`messages` messages go out back to back: the id to pass with each acknowledgement, or None when
        the train is too short to measure anything."""
        if messages < MIN_TRAIN_MESSAGES:
            return None
        self._next_id += 1
        self._trains[self._next_id] = _Train(messages)
        return self._next_id

    def acked(self, train: int, size_bytes: int, now: float) -> float | None:
        """One message of `train` (its size on the wire) was acknowledged at `now`; the new sample when
        this completed the train."""
        found = self._trains.get(train)
        if found is None:
            return None
        found.acked += 1
        if found.first_ack_at is None:
            found.first_ack_at = now
        else:
            found.bytes_after_first += size_bytes
            found.last_ack_at = now
        if found.acked < found.messages:
            return None
        del self._trains[train]
        spread = max(found.last_ack_at - found.first_ack_at, MIN_DISPERSION_S)
        sample = found.bytes_after_first * 8 / spread
        self._samples.append(sample)
        return sample

    def abandon(self, train: int) -> None:
        """The train was broken (a message refused): forget it."""
        self._trains.pop(train, None)

    def reset_trains(self) -> None:
        """The connection was lost: no train under way can complete as it was sent."""
        self._trains.clear()
