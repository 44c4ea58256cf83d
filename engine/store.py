"""One evaluation cycle of one feed partition, in one PostgreSQL transaction.

The cycle deletes the feed rows it takes (`DELETE … RETURNING`) in the same transaction that stores the
evaluation state and the alerts derived from them. A crash or SIGKILL anywhere before COMMIT rolls all of
it back, the feed rows included, so the next owner of the partition redoes exactly that work from exactly
that state; after COMMIT the rows are gone and the work is never redone. Only committed feed rows are
visible, and a feed row commits with its samples, so the engine reads only committed data; a row that
commits later is simply taken by a later cycle (there is no position to skip past).

Per device, samples are evaluated in (ts, boot, seq) order from the device's head. A feed row whose range
starts at or before the head is a late sample: each rule restarts from the state it had just before it
(`engine_transitions`), and the episodes from there on are reconciled with the alerts already written:
the same episode is the same row (natural key rule, device, started_at), an episode that no longer
happens is retracted, an alert whose clearing no longer happens is reopened.
"""

from __future__ import annotations

import logging
from bisect import bisect_left
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import psycopg
from psycopg import sql

from engine import fence_stage, trip_stage
from engine.cycle_reads import (
    RULE_COLUMNS,
    Row,
    read_heads,
    read_latest_states,
    read_samples,
    read_stops,
)
from engine.cycle_writes import Writes
from engine.episodes import WRITES as ALERT_WRITES
from engine.episodes import AlertTarget, Episode, reconcile
from engine.fall import Reading, falls
from engine.fence_stage import FenceReport, FenceSet, evaluate_fences
from engine.rules import Device, Rule
from engine.threshold import IDLE, Cleared, Point, Raised, RuleState, SampleKey, evaluate
from engine.trip_stage import evaluate_trips, resume
from models.rules import DROP

log = logging.getLogger(__name__)

# Each feed row lists a batch's devices of one partition. A cycle reads every committed sample of its
# devices from their heads on, whichever feed row names it, so it takes all the partition's rows there are:
# a row left for the next cycle would name samples already evaluated, which that cycle would take for late
# ones and re-evaluate (exactly, but at the price of a rewind of every rule of the device). The bound only
# caps one statement's result.
FEED_ROWS_PER_CYCLE: Final = 10_000
# How far back (device time, from a device's newest sample) a late sample is re-evaluated exactly: older
# transitions are pruned but for the last one before this horizon, from which an older sample restarts.
REWIND_HORIZON: Final = timedelta(days=1)

_CLAIM_FEED = (
    "DELETE FROM engine_feed WHERE id IN (SELECT id FROM engine_feed WHERE part = %s ORDER BY id LIMIT %s)"
    " RETURNING devices, ts_from"
)
_DEVICES = "SELECT id, kind, group_name FROM devices WHERE id = ANY(%s)"
_SET_HEAD = (
    "INSERT INTO engine_heads (device_id, ts, boot, seq)"
    " SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::integer[], %s::bigint[])"
    " ON CONFLICT (device_id) DO UPDATE SET ts = EXCLUDED.ts, boot = EXCLUDED.boot, seq = EXCLUDED.seq,"
    " updated_at = now()"
)
_STATE_BEFORE = (
    "SELECT phase, since, clear_since FROM engine_transitions WHERE rule_id = %s AND device_id = %s AND ts < %s"
    " ORDER BY ts DESC, boot DESC, seq DESC LIMIT 1"
)
_FORGET_FROM = "DELETE FROM engine_transitions WHERE rule_id = %s AND device_id = %s AND ts >= %s"
_ADD_TRANSITION = (
    "INSERT INTO engine_transitions (rule_id, device_id, ts, boot, seq, phase, since, clear_since)"
    " SELECT * FROM unnest(%s::bigint[], %s::text[], %s::timestamptz[], %s::integer[], %s::bigint[], %s::text[],"
    " %s::timestamptz[], %s::timestamptz[]) ON CONFLICT DO NOTHING"
)
_PRUNE = (
    "DELETE FROM engine_transitions WHERE rule_id = %(rule)s AND device_id = %(device)s AND ts < %(cutoff)s"
    " AND (ts, boot, seq) < (SELECT ts, boot, seq FROM engine_transitions WHERE rule_id = %(rule)s"
    " AND device_id = %(device)s AND ts < %(cutoff)s ORDER BY ts DESC, boot DESC, seq DESC LIMIT 1)"
)
_WRITES: Final = (_ADD_TRANSITION, _PRUNE, _SET_HEAD)  # at the cycle's end, in this order
_COLUMNAR: Final = (_ADD_TRANSITION, _SET_HEAD)
_SAMPLE_COLUMNS: Final = {name: 3 + i for i, name in enumerate(RULE_COLUMNS)}


@dataclass(slots=True)
class CycleReport:
    """What one cycle did, for the log and the tests."""

    feed_rows: int = 0
    devices: int = 0
    samples: int = 0
    rewinds: int = 0
    trip_points: int = 0  # points evaluated again for trips (a window per device, engine/trip_stage.py)
    alert_events: dict[str, int] = field(default_factory=dict)
    fences: FenceReport = field(default_factory=FenceReport)


async def run_cycle(
    conn: psycopg.AsyncConnection[Any], part: int, rules: Sequence[Rule], fences: FenceSet | None = None
) -> CycleReport:
    """Take up to `FEED_ROWS_PER_CYCLE` feed rows of partition `part`, evaluate, commit; return what was done."""
    report = CycleReport()
    async with conn.transaction(), conn.cursor() as cur:
        await cur.execute(_CLAIM_FEED, (part, FEED_ROWS_PER_CYCLE))
        earliest: dict[str, datetime] = {}
        for ids, firsts in await cur.fetchall():
            report.feed_rows += 1
            for device_id, ts_from in zip(ids, firsts, strict=True):
                if device_id not in earliest or ts_from < earliest[device_id]:
                    earliest[device_id] = ts_from
        if not earliest:
            return report
        earliest = dict(sorted(earliest.items()))
        await cur.execute(_DEVICES, (list(earliest),))
        known = {row[0]: Device(row[0], row[1], row[2]) for row in await cur.fetchall()}
        devices = {device_id: known.get(device_id, Device(device_id, "", None)) for device_id in earliest}
        heads = await read_heads(cur, list(earliest))
        starts = {device_id: _rule_start(heads[device_id].rules, ts_from) for device_id, ts_from in earliest.items()}
        scoped = _scoped(rules, devices)
        applying = {device_id: scoped[device_id][0] for device_id in devices}
        latest = await read_latest_states(
            cur,
            [
                (rule.id, device_id)
                for device_id, (rewind, _) in starts.items()
                if not rewind
                for rule in applying[device_id]
            ],
        )
        fence_starts = (
            await fence_stage.read_starts(cur, {d: heads[d].fences for d in earliest}, earliest) if fences else {}
        )
        stops = await read_stops(cur, earliest)
        resumes = {d: resume(heads[d].trips, stops[d], ts_from) for d, ts_from in earliest.items()}
        since: dict[str, datetime | None] = {}
        for device_id in earliest:
            bounds = [starts[device_id][1], resumes[device_id].since]
            if device_id in fence_starts:
                bounds.append(fence_starts[device_id].key[0])
            since[device_id] = None if None in bounds else min(b for b in bounds if b is not None)
        samples = await read_samples(cur, since)
        writes = Writes(
            *_WRITES,
            *ALERT_WRITES,
            *fence_stage.WRITES,
            *trip_stage.WRITES,
            returning=fence_stage.RETURNING,
            columnar=(*_COLUMNAR, *fence_stage.COLUMNAR, *trip_stage.COLUMNAR),
        )
        for device_id, device in devices.items():
            rows = samples[device_id]
            await _evaluate_device(
                cur,
                device,
                earliest[device_id],
                applying[device_id],
                report,
                head=heads[device_id].rules,
                rows=rows,
                latest=latest,
                writes=writes,
            )
            if device_id in fence_starts and fences is not None:
                fence_rules = scoped[device_id][1]
                await evaluate_fences(
                    cur,
                    fences,
                    device,
                    fence_starts[device_id],
                    rows,
                    report=report.fences,
                    writes=writes,
                    rules=fence_rules,
                )
            report.trip_points += evaluate_trips(device_id, resumes[device_id], rows, writes)
            report.devices += 1
        returned = await writes.send(conn)
        fence_stage.count_events(returned, report.fences)
    return report


def _scoped(rules: Sequence[Rule], devices: dict[str, Device]) -> dict[str, tuple[list[Rule], list[Rule]]]:
    """Per device, its threshold rules and its geofence rules, in the order of `rules`. Devices of the same
    kind and group share their lists, unless a rule names the device itself."""
    named = {rule.device_id for rule in rules if rule.device_id is not None}
    shared: dict[tuple[str, str | None, str | None], tuple[list[Rule], list[Rule]]] = {}
    scoped = {}
    for device_id, device in devices.items():
        key = (device.kind, device.group, device_id if device_id in named else None)
        lists = shared.get(key)
        if lists is None:
            applying = [rule for rule in rules if rule.applies_to(device)]
            lists = shared[key] = ([r for r in applying if r.on_samples], [r for r in applying if r.on_fences])
        scoped[device_id] = lists
    return scoped


def _rule_start(head: SampleKey | None, ts_from: datetime) -> tuple[bool, datetime]:
    """Whether the device's threshold rules rewind (a sample at or before their head), and the device time
    their samples start at."""
    rewind = head is not None and ts_from <= head.ts
    return rewind, ts_from if rewind or head is None else head.ts


async def _evaluate_device(
    cur: psycopg.AsyncCursor[Any],
    device: Device,
    ts_from: datetime,
    rules: list[Rule],
    report: CycleReport,
    *,
    head: SampleKey | None,
    rows: list[Row],
    latest: dict[tuple[int, str], RuleState],
    writes: Writes,
) -> None:
    rewind, start = _rule_start(head, ts_from)
    samples = [s for s in rows if s[0] >= start and (rewind or head is None or SampleKey(s[0], s[1], s[2]) > head)]
    if not samples:
        return
    report.samples += len(samples)
    report.rewinds += rewind
    first = SampleKey(samples[0][0], samples[0][1], samples[0][2])
    last = SampleKey(samples[-1][0], samples[-1][1], samples[-1][2])
    series = _Series(samples)
    for rule in rules:
        await _evaluate_rule(
            cur,
            rule,
            device.id,
            samples,
            first.ts,
            series=series,
            rewind=rewind,
            latest=latest.get((rule.id, device.id), IDLE),
            report=report,
            writes=writes,
        )
    if head is None or last > head:
        writes.add(_SET_HEAD, (device.id, last.ts, last.boot, last.seq))


class _Series:
    """A device's new samples as one series per metric, built once and shared by every rule on that metric
    (a fleet has tens of rules on a handful of metrics). Most rules are idle and skipped on the series'
    extremes alone, so its points are built only for a rule that runs its state machine."""

    def __init__(self, samples: list[tuple[Any, ...]]) -> None:
        self._samples = samples
        self._columns: dict[str, tuple[list[datetime], list[float]]] = {}
        self._built: dict[str, list[Point]] = {}
        self._extremes: dict[str, tuple[float, float]] = {}

    def _column(self, metric: str) -> tuple[list[datetime], list[float]]:
        """The device times and values of the samples that carry `metric`, in device order."""
        column = self._columns.get(metric)
        if column is None:
            at = _SAMPLE_COLUMNS[metric]
            carrying = [s for s in self._samples if s[at] is not None]
            column = self._columns[metric] = ([s[0] for s in carrying], [s[at] for s in carrying])
        return column

    def points(self, metric: str, since: datetime) -> list[Point]:
        """The samples that carry `metric`, from device time `since` on, in device order."""
        built = self._built.get(metric)
        if built is None:
            at = _SAMPLE_COLUMNS[metric]
            built = self._built[metric] = [
                Point(SampleKey(s[0], s[1], s[2]), s[at]) for s in self._samples if s[at] is not None
            ]
        if not built or built[0].key.ts >= since:
            return built
        return built[bisect_left(self._column(metric)[0], since) :]

    def extremes(self, metric: str, since: datetime) -> tuple[float, float] | None:
        """The lowest and highest value of the points `points(metric, since)` gives; None when there are none."""
        times, values = self._column(metric)
        if not values:
            return None
        if times[0] >= since:
            whole = self._extremes.get(metric)
            if whole is None:
                whole = self._extremes[metric] = (min(values), max(values))
            return whole
        tail = values[bisect_left(times, since) :]
        return (min(tail), max(tail)) if tail else None


async def _evaluate_rule(
    cur: psycopg.AsyncCursor[Any],
    rule: Rule,
    device_id: str,
    samples: list[tuple[Any, ...]],
    first_ts: datetime,
    *,
    series: _Series,
    rewind: bool,
    latest: RuleState,
    report: CycleReport,
    writes: Writes,
) -> None:
    """Evaluate one rule over a device's new samples. `latest` is the rule's state after its last
    transition (read for all rules at once); a rewind reads the state before `first_ts` instead."""
    drop = rule.condition.op == DROP
    falling = await _falls(cur, rule, device_id, samples) if drop else []
    if rewind:
        await cur.execute(_STATE_BEFORE, (rule.id, device_id, first_ts))
        row = await cur.fetchone()
        await cur.execute(_FORGET_FROM, (rule.id, device_id, first_ts))
        state = RuleState(row[0], row[1], row[2]) if row is not None else IDLE
    else:
        state = latest
    if not drop and not rewind and state.phase == "idle":
        extremes = series.extremes(rule.metric or "", rule.created_at)
        if extremes is None or not rule.condition.triggers_within(*extremes):
            return  # idle, and no sample meets the condition: it stays idle, with nothing to write
    points = falling if drop else series.points(rule.metric or "", rule.created_at)
    if not points:
        return
    result = evaluate(rule.condition, state, points)
    if result.transitions:
        for key, after in result.transitions:
            writes.add(
                _ADD_TRANSITION,
                (rule.id, device_id, key.ts, key.boot, key.seq, after.phase, after.since, after.clear_since),
            )
        cutoff = points[-1].key.ts - REWIND_HORIZON
        writes.add(_PRUNE, {"rule": rule.id, "device": device_id, "cutoff": cutoff})
    if not rewind and not result.outcomes:
        # In order and nothing raised or cleared: the alerts already say what these samples say.
        return
    # The episode under way at the restart (pending or alerting) may have been raised after it: its alert,
    # if any, is re-decided here like those that began later.
    anchor = state.since if state.phase != "idle" and state.since is not None else first_ts
    await reconcile(
        cur,
        AlertTarget(rule.id, device_id, rule.severity),
        _episodes(rule, state, result.outcomes),
        since=first_ts,
        anchor=anchor,
        counts=report.alert_events,
        writes=writes,
    )


async def _falls(
    cur: psycopg.AsyncCursor[Any], rule: Rule, device_id: str, samples: list[tuple[Any, ...]]
) -> list[Point]:
    """A `drop` rule's points: the fall at each new sample over the window before it, read back from
    `telemetry` for the readings before the first new one."""
    column, speed = _SAMPLE_COLUMNS[rule.metric or ""], _SAMPLE_COLUMNS["speed"]
    new = [
        Reading(SampleKey(s[0], s[1], s[2]), s[column], s[speed])
        for s in samples
        if s[column] is not None and s[0] >= rule.created_at
    ]
    if not new:
        return []
    window_s = rule.condition.window_s or 0
    first = new[0].key
    # The metric is one of RULE_METRICS, each a column of `telemetry` (never text from a request).
    query = sql.SQL(
        "SELECT ts, boot, seq, {metric}, speed FROM telemetry WHERE device_id = %s AND ts >= %s AND ts <= %s"
        " AND {metric} IS NOT NULL ORDER BY ts, boot, seq"
    ).format(metric=sql.Identifier(rule.metric or ""))
    await cur.execute(query, (device_id, first.ts - timedelta(seconds=window_s), first.ts))
    history = [
        Reading(SampleKey(r[0], r[1], r[2]), r[3], r[4])
        for r in await cur.fetchall()
        if SampleKey(r[0], r[1], r[2]) < first
    ]
    return falls(history, new, window_s, while_parked=rule.condition.while_parked)


def _episodes(rule: Rule, state: RuleState, outcomes: Sequence[Raised | Cleared]) -> dict[datetime, Episode]:
    """Every episode the samples touch: the alert in progress before them, and those they raise."""
    episodes: dict[datetime, Episode] = {}
    carried = state.since if state.phase in ("active", "clearing") else None
    if carried is not None:
        episodes[carried] = Episode(carried)
    for outcome in outcomes:
        if isinstance(outcome, Raised):
            reading = "fell" if rule.condition.op == DROP else "read"
            message = f"{rule.name}: {rule.condition.describe(rule.metric)} ({reading} {outcome.value:g})"
            episodes[outcome.started_at] = Episode(
                outcome.started_at, outcome.raised_at, outcome.value, message=message
            )
        else:
            episodes.setdefault(outcome.started_at, Episode(outcome.started_at)).cleared_at = outcome.cleared_at
    return episodes
