"""How far a metric fell within a trailing window, sample by sample: the signal of a `drop` rule
(fuel theft: the level fell by more than X within Y seconds while parked). Pure.

Each evaluated sample's value is the highest reading of the window before it (the samples from
`ts - window_s` up to and including it) minus its own reading; the threshold state machine then treats
that fall like any other value, so duration, hysteresis, late samples and exactness are the threshold
rules'. With `while_parked`, only readings of a still device (speed at most `PARKED_KMH`; a reading
without a speed is not known to be still) are evaluated and count towards the window's highest: the fall
is the one that happened while standing, and what driving burns never adds to it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from engine.threshold import Point, SampleKey
from models.rules import PARKED_KMH


@dataclass(frozen=True, slots=True)
class Reading:
    """One sample's reading of the metric, and the device's speed then (None: not reported)."""

    key: SampleKey
    value: float
    speed_kmh: float | None


def falls(history: Iterable[Reading], new: Sequence[Reading], window_s: int, *, while_parked: bool) -> list[Point]:
    """The fall at each of `new` (in device order) over the trailing `window_s`, `history` being the
    readings just before the first of them (at least `window_s` of it)."""
    window = timedelta(seconds=window_s)
    # A monotonically decreasing deque of (ts, value): its head is the window's highest reading.
    highest: deque[tuple[datetime, float]] = deque()
    out: list[Point] = []

    def add(reading: Reading) -> None:
        while highest and highest[-1][1] <= reading.value:
            highest.pop()
        highest.append((reading.key.ts, reading.value))
        while highest[0][0] < reading.key.ts - window:
            highest.popleft()

    def counts(reading: Reading) -> bool:
        return not while_parked or (reading.speed_kmh is not None and reading.speed_kmh <= PARKED_KMH)

    for reading in history:
        if counts(reading):
            add(reading)
    for reading in new:
        if counts(reading):
            add(reading)
            out.append(Point(reading.key, highest[0][1] - reading.value))
    return out
