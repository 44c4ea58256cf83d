"""Threshold evaluation of one rule over one device's samples: pure, so every case is a unit test.

The state machine: `idle` → `pending` (condition true, waiting for `for_s`) → `active` (alert raised) →
`clearing` (clear condition true, waiting for `clear_for_s`) → `idle` (alert cleared). Samples that do
not carry the rule's metric leave the state alone. Durations are measured in device time between
samples, so a replayed backlog gives the same alerts as the live stream did. Each state change is
returned with the sample that caused it: the store keeps them, and a late sample restarts from the state
in force just before it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from models.rules import Condition

Phase = Literal["idle", "pending", "active", "clearing"]


@dataclass(frozen=True, slots=True, order=True)
class SampleKey:
    """A sample's place in its device's order: device time, then boot, then seq."""

    ts: datetime
    boot: int
    seq: int


@dataclass(frozen=True, slots=True)
class Point:
    """One sample's value of the rule's metric."""

    key: SampleKey
    value: float


@dataclass(frozen=True, slots=True)
class RuleState:
    """Where one rule stands for one device; `since` is when the current episode began."""

    phase: Phase = "idle"
    since: datetime | None = None
    clear_since: datetime | None = None


IDLE = RuleState()


@dataclass(frozen=True, slots=True)
class Raised:
    """The condition held for the rule's duration: an alert for the episode that began at `started_at`."""

    started_at: datetime
    raised_at: datetime
    value: float


@dataclass(frozen=True, slots=True)
class Cleared:
    """The clear condition held for its duration: the episode's alert is over."""

    started_at: datetime
    cleared_at: datetime


Outcome = Raised | Cleared


@dataclass(frozen=True, slots=True)
class Evaluation:
    """The state after the samples, each state change with its sample, and the alert outcomes in order."""

    state: RuleState
    transitions: list[tuple[SampleKey, RuleState]]
    outcomes: list[Outcome]


def evaluate(condition: Condition, state: RuleState, points: Iterable[Point]) -> Evaluation:
    """Run `points` (in `SampleKey` order) through the state machine, starting from `state`."""
    transitions: list[tuple[SampleKey, RuleState]] = []
    outcomes: list[Outcome] = []
    for point in points:
        after = _step(condition, state, point, outcomes)
        if after != state:
            transitions.append((point.key, after))
            state = after
    return Evaluation(state, transitions, outcomes)


def _step(condition: Condition, state: RuleState, point: Point, outcomes: list[Outcome]) -> RuleState:
    ts, value = point.key.ts, point.value
    if state.phase in ("idle", "pending"):
        if not condition.triggers(value):
            return IDLE
        since = state.since if state.phase == "pending" and state.since is not None else ts
        if (ts - since).total_seconds() >= condition.for_s:
            outcomes.append(Raised(since, ts, value))
            return RuleState("active", since)
        return RuleState("pending", since)
    started = state.since if state.since is not None else ts
    if not condition.clears(value):
        return RuleState("active", started)
    clear_since = state.clear_since if state.phase == "clearing" and state.clear_since is not None else ts
    if (ts - clear_since).total_seconds() >= condition.clear_for_s:
        outcomes.append(Cleared(started, ts))
        return IDLE
    return RuleState("clearing", started, clear_since)
