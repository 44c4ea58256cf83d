"""Alert rules and alerts: the vocabulary the engine, the API and the `fleet rules` command share.

A threshold rule compares one known metric or the speed (`RULE_METRICS`) with a limit: above (`>`), below (`<`) or
outside a range. It triggers once the condition has held `for_s` seconds of device time, and clears once
the clear condition has held `clear_for_s`; the clear condition is the rule's own condition reversed,
or, with `clear_threshold`, a hysteresis limit ("raise above 110 °C, clear below 100 °C"). A rule
applies to one device, a kind, a group, or (none of the three) the whole fleet.

A presence rule (`offline`) alerts on a device offline longer than `for_s`. A geofence rule names a fence
(`fence_id`): `entered` alerts from the device's enter until its exit, `inside` once a stay inside has
lasted `for_s`, until the exit, and `left` from the exit (or once the device has been outside `for_s`
since) until it enters again.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Final, Literal

import msgspec
from msgspec import Meta

from models.telemetry import KNOWN_METRICS, MetricSpec

# What a threshold rule can compare: the known metrics, and the position's speed (overspeed rules).
RULE_METRICS: Final[dict[str, MetricSpec]] = KNOWN_METRICS | {"speed": MetricSpec("km/h", 0, 500)}
RULE_DURATION_MAX_S: Final = 86_400  # a day: longer windows are reports, not alerts
Severity = Literal["critical", "major", "minor", "warning"]
SEVERITIES: Final[tuple[str, ...]] = ("critical", "major", "minor", "warning")
Operator = Literal[">", "<", "outside", "offline", "entered", "inside", "left", "drop"]
OFFLINE: Final = "offline"  # a presence rule: the device offline for longer than `for_s`
# Geofence rules: an episode is a stay inside the fence (from an enter to the exit) or, for `left`, a time
# outside it (from an exit to the next enter).
FENCE_OPS: Final[tuple[str, ...]] = ("entered", "inside", "left")
# A rate-of-change rule: the metric fell by more than `threshold` within `window_s` (fuel theft).
DROP: Final = "drop"
PARKED_KMH: Final = 1.0  # `while_parked`: a sample whose speed is at most this (GNSS noise when still)
AlertState = Literal["active", "acknowledged", "cleared", "retracted"]
ALERT_STATES: Final[tuple[str, ...]] = ("active", "acknowledged", "cleared", "retracted")
OPEN_STATES: Final[tuple[str, ...]] = ("active", "acknowledged")
# Why an alert was cleared: its clear condition held, an operator cleared it, or its rule was removed.
ClearReason = Literal["condition", "operator", "rule_removed"]
ScopeName = Annotated[str, Meta(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$", max_length=128)]
DurationS = Annotated[int, Meta(ge=0)]

AlertEvent = Literal["raised", "acknowledged", "cleared", "commented", "reopened", "retracted"]
ALERT_EVENTS: Final[tuple[str, ...]] = ("raised", "acknowledged", "cleared", "commented", "reopened", "retracted")
NOTIFY_DEFAULT_EVENTS: Final[tuple[AlertEvent, ...]] = ("raised", "cleared")


class NotifyTarget(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A notification channel a rule notifies (models/notifications.py), and of which alert changes."""

    channel: int
    events: list[AlertEvent] = msgspec.field(default_factory=lambda: list(NOTIFY_DEFAULT_EVENTS))


class RuleSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What an operator writes to create a rule; `rule_problem` says whether it makes sense."""

    name: Annotated[str, Meta(min_length=1, max_length=200)]
    metric: Annotated[str, Meta(min_length=1, max_length=32)] | None = None  # none for `offline`
    op: Operator
    threshold: float | None = None
    low: float | None = None
    high: float | None = None
    for_s: DurationS = 0
    clear_threshold: float | None = None
    clear_for_s: DurationS = 0
    severity: Severity = "warning"
    device_id: ScopeName | None = None
    kind: ScopeName | None = None
    group: ScopeName | None = None
    fence_id: int | None = None  # geofence rules only; whether the fence exists is the store's to check
    notify: list[NotifyTarget] = []  # whether each channel exists is the store's to check
    window_s: DurationS | None = None  # op `drop`: the window the fall is measured over
    while_parked: bool = False  # op `drop`: only samples of a parked device count (speed <= 1 km/h)


def rule_problem(spec: RuleSpec) -> str | None:
    """Why `spec` cannot be a rule (a sentence for a 400 problem), or None when it can."""
    notify_problem = _notify_problem(spec.notify)
    if notify_problem is not None:
        return notify_problem
    for name, seconds in (("for_s", spec.for_s), ("clear_for_s", spec.clear_for_s)):
        if not 0 <= seconds <= RULE_DURATION_MAX_S:
            return f"{name} {seconds} is out of range: 0 to {RULE_DURATION_MAX_S} seconds"
    if sum(scope is not None for scope in (spec.device_id, spec.kind, spec.group)) > 1:
        return "a rule applies to one device, one kind or one group (or, with none of them, to every device)"
    misplaced = _misplaced_field(spec)
    if misplaced is not None:
        return misplaced
    if spec.op in FENCE_OPS:
        return _fence_problem(spec)
    if spec.op == OFFLINE:
        return _presence_problem(spec)
    metric = RULE_METRICS.get(spec.metric or "")
    if metric is None:
        return f"unknown metric {spec.metric!r}; known: {', '.join(RULE_METRICS)}"
    if spec.op == DROP:
        return _drop_problem(spec, metric.high - metric.low)
    problem, limits = _limits_of(spec)
    if problem is not None:
        return problem
    for limit in limits:
        if not metric.low <= limit <= metric.high:
            return f"{limit:g} is outside what {spec.metric} can read ({metric.low:g} to {metric.high:g} {metric.unit})"
    return None


def _misplaced_field(spec: RuleSpec) -> str | None:
    """A field that belongs to another kind of rule than `spec.op`'s."""
    if spec.op != DROP and (spec.window_s is not None or spec.while_parked):
        return "window_s and while_parked belong to op 'drop'"
    if spec.op not in FENCE_OPS and spec.fence_id is not None:
        return f"op {spec.op!r} takes no fence_id: only the geofence ops ({', '.join(FENCE_OPS)}) do"
    return None


def _notify_problem(targets: list[NotifyTarget]) -> str | None:
    """Why a rule's `notify` list cannot be: a channel named twice, or one told of nothing."""
    seen: set[int] = set()
    for target in targets:
        if target.channel in seen:
            return f"channel {target.channel} is named twice in notify"
        seen.add(target.channel)
        if not target.events:
            return f"notify: channel {target.channel} needs at least one event ({', '.join(ALERT_EVENTS)})"
    return None


def _presence_problem(spec: RuleSpec) -> str | None:
    """Why an `offline` rule cannot be: it takes a duration of at least a second, nothing to compare."""
    if spec.metric is not None or any(
        v is not None for v in (spec.threshold, spec.low, spec.high, spec.clear_threshold)
    ):
        return "op 'offline' takes no metric, threshold, low, high or clear_threshold: only for_s"
    if spec.for_s < 1 or spec.clear_for_s:
        return "op 'offline' takes for_s of at least 1 second (how long offline before the alert), no clear_for_s"
    return None


def _drop_problem(spec: RuleSpec, span: float) -> str | None:
    """Why a `drop` rule cannot be: it takes the fall (threshold, above zero and within the metric's
    range), the window it happens in, and optionally a lower fall that clears it."""
    if spec.threshold is None or spec.low is not None or spec.high is not None:
        return "op 'drop' takes threshold (how far the metric falls), not low and high"
    if not 0 < spec.threshold <= span:
        return f"op 'drop': threshold {spec.threshold:g} must be above 0 and at most {span:g} (the metric's range)"
    if spec.window_s is None or not 1 <= spec.window_s <= RULE_DURATION_MAX_S:
        return f"op 'drop' takes window_s from 1 to {RULE_DURATION_MAX_S} seconds (the time the fall happens in)"
    if spec.clear_threshold is not None and not 0 <= spec.clear_threshold <= spec.threshold:
        return f"clear_threshold {spec.clear_threshold:g} must be from 0 to threshold {spec.threshold:g} for op 'drop'"
    return None


def _fence_problem(spec: RuleSpec) -> str | None:
    """Why a geofence rule cannot be: it names a fence and at most a duration, nothing to compare."""
    if spec.fence_id is None:
        return f"op {spec.op!r} takes a fence_id (GET /api/v1/geofences)"
    if spec.metric is not None or any(
        v is not None for v in (spec.threshold, spec.low, spec.high, spec.clear_threshold)
    ):
        return f"op {spec.op!r} takes no metric, threshold, low, high or clear_threshold: a fence_id and for_s"
    if spec.clear_for_s:
        return f"op {spec.op!r} clears when the device crosses back: no clear_for_s"
    if spec.op == "entered" and spec.for_s:
        return "op 'entered' alerts at the enter: no for_s (op 'inside' alerts after a stay of for_s)"
    if spec.op == "inside" and spec.for_s < 1:
        return "op 'inside' takes for_s of at least 1 second (how long inside before the alert; op 'entered': at once)"
    return None


def _limits_of(spec: RuleSpec) -> tuple[str | None, tuple[float, ...]]:
    """Why the limits of `spec` do not fit its operator (or None), and the limits it names."""
    if spec.op == "outside":
        if spec.low is None or spec.high is None or spec.threshold is not None:
            return "op 'outside' takes low and high (not threshold)", ()
        if spec.low >= spec.high:
            return f"low {spec.low:g} must be below high {spec.high:g}", ()
        if spec.clear_threshold is not None:
            return "op 'outside' clears when the value is back inside [low, high]: no clear_threshold", ()
        return None, (spec.low, spec.high)
    if spec.threshold is None or spec.low is not None or spec.high is not None:
        return f"op {spec.op!r} takes threshold (not low and high)", ()
    clear = spec.clear_threshold
    if clear is None:
        return None, (spec.threshold,)
    if spec.op == ">" and clear > spec.threshold:
        return f"clear_threshold {clear:g} must not be above threshold {spec.threshold:g} for op '>'", ()
    if spec.op == "<" and clear < spec.threshold:
        return f"clear_threshold {clear:g} must not be below threshold {spec.threshold:g} for op '<'", ()
    return None, (spec.threshold, clear)


class Condition(msgspec.Struct, frozen=True, kw_only=True):
    """The part of a rule the evaluation needs: when it triggers, when it clears, and for how long."""

    op: Operator
    threshold: float | None = None
    low: float | None = None
    high: float | None = None
    for_s: int = 0
    clear_threshold: float | None = None
    clear_for_s: int = 0

    window_s: int | None = None
    while_parked: bool = False

    def triggers(self, value: float) -> bool:
        """True when `value` meets the alert condition (for `drop`, `value` is the fall)."""
        if self.op in (">", DROP):
            return value > _given(self.threshold)
        if self.op == "<":
            return value < _given(self.threshold)
        return value < _given(self.low) or value > _given(self.high)

    def triggers_within(self, low: float, high: float) -> bool:
        """True when some value from `low` to `high` meets the alert condition: `triggers` of the
        extremes, which is all a range needs (each operator compares with fixed limits)."""
        return self.triggers(low) or self.triggers(high)

    def clears(self, value: float) -> bool:
        """True when `value` meets the clear condition (the hysteresis limit, if any)."""
        if self.clear_threshold is None or self.op == "outside":
            return not self.triggers(value)
        if self.op in (">", DROP):
            return value < self.clear_threshold
        return value > self.clear_threshold

    def describe(self, metric: str | None) -> str:
        """The condition as people write it, e.g. `engine_temp > 110 for 30 s`."""
        if self.op == OFFLINE:
            return f"offline for more than {self.for_s} s"
        if self.op == DROP:
            parked = " while parked" if self.while_parked else ""
            text = f"{metric} fell more than {_given(self.threshold):g} within {self.window_s} s{parked}"
            return text + (f" for {self.for_s} s" if self.for_s else "")
        if self.op == "outside":
            text = f"{metric} outside {self.low:g}…{self.high:g}"
        else:
            text = f"{metric} {self.op} {_given(self.threshold):g}"
        return text + (f" for {self.for_s} s" if self.for_s else "")


def fence_condition_text(op: str, for_s: int, fence_name: str) -> str:
    """A geofence rule's condition as people say it, e.g. `inside 'Depot' for more than 10 min`."""
    if op == "entered":
        return f"entered '{fence_name}'"
    if op == "inside":
        return f"inside '{fence_name}' for more than {duration_text(for_s)}"
    return f"left '{fence_name}'" + (f" (outside for more than {duration_text(for_s)})" if for_s else "")


def duration_text(seconds: int) -> str:
    """`90 s`, `10 min`, `2 h`: the largest unit that divides it exactly."""
    if seconds and seconds % 3600 == 0:
        return f"{seconds // 3600} h"
    if seconds and seconds % 60 == 0:
        return f"{seconds // 60} min"
    return f"{seconds} s"


def condition_of(spec: RuleSpec) -> Condition:
    """The evaluable condition of a valid rule."""
    return Condition(
        op=spec.op,
        threshold=spec.threshold,
        low=spec.low,
        high=spec.high,
        for_s=spec.for_s,
        clear_threshold=spec.clear_threshold,
        clear_for_s=spec.clear_for_s,
        window_s=spec.window_s,
        while_parked=spec.while_parked,
    )


def _given(limit: float | None) -> float:
    if limit is None:  # rule_problem refuses such rules; the database CHECKs refuse them too
        raise ValueError("rule without its limit")
    return limit


class AlertNotice(msgspec.Struct, frozen=True, kw_only=True):
    """One change of an alert, as the engine publishes it on `fleet/v1/{device_id}/alerts` (QoS 1).

    Delivery is at least once: after a crash a notice may come again with the same `event_id`; an
    integrator that keeps the last `event_id` per alert drops the repeat. `started_at`, `raised_at` and a
    `cleared_at` of `clear_reason` `condition` are device times; the alert is as it is when published.
    """

    event_id: int
    event: AlertEvent
    alert_id: int
    rule_id: int
    rule_name: str
    device_id: str
    severity: Severity
    state: AlertState
    message: str
    value: float | None = None
    started_at: datetime
    raised_at: datetime
    acknowledged_at: datetime | None = None
    acknowledged_by: str | None = None
    cleared_at: datetime | None = None
    clear_reason: ClearReason | None = None
    cleared_by: str | None = None
