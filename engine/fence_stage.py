"""Geofence enter/exit in the engine's cycle: a device's new points through `fence_events`, stored exactly.

Runs inside `run_cycle`'s transaction, after the rules, so it commits or rolls back with the feed rows it
derives from. Per device, the state after its last evaluated point is kept in `engine_fence_state`; every
`CHECKPOINT_SPACING` of device time the state *before* a point is kept in `engine_fence_checkpoints`.

A late point (at or before the device's fence head) restarts from the last checkpoint before it: the points
from there are read again in (ts, boot, seq) order, the late one among them, and the events confirmed by
those points replace the ones stored for the same window. An event's natural key is (device, fence, kind,
ts), so events that a re-run finds again are left as they are and nothing is written twice; an event the
re-run no longer finds (a late point showed the device had not left) is deleted.

Geofence rules (`engine/fence_rules.py`) are evaluated on the same window: for each rule of the device, the
stay under way before the window (from the last event stored before it) and the events of the window give
the episodes, reconciled with the alerts from the window on (`engine/episodes.py`), so a re-run retracts an
alert whose stay no longer happens as it rewrites the events.

Fences are read again only when `geofences` changed (`geofence_version`, bumped by a trigger in the
writing transaction), and their index is built then, one per device group (the global fences and the group's own).
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any, Final

import msgspec
import psycopg

from engine.cycle_reads import (
    LAT,
    LON,
    SPEED,
    Checkpoint,
    Row,
    read_checkpoints_before,
    read_latest_checkpoints,
)
from engine.cycle_writes import Writes
from engine.episodes import AlertTarget, reconcile
from engine.fence_index import FenceIndex
from engine.fence_rules import FenceWindow, fence_episodes, side_of
from engine.geofence import DeviceFenceState, FenceEvent, FenceTracker, last_on_side
from engine.rules import Device, Rule
from engine.track import TrackPoint
from models.fences.geojson import FenceRejected, parse_fence
from models.fences.shapes import Fence
from models.rules import fence_condition_text

log = logging.getLogger(__name__)

TOLERANCE_M: Final = 20.0  # the band either side of a border (docs/rules.md): GPS jitter does not flap
CHECKPOINT_SPACING: Final = timedelta(minutes=5)  # a late point re-runs at most about this much
REWIND_HORIZON: Final = timedelta(days=1)  # older checkpoints are pruned, but for the last one before it

_VERSION = "SELECT n FROM geofence_version"
_FENCES = "SELECT id, updated_at, group_name FROM geofences WHERE deleted_at IS NULL ORDER BY id"
# As text, decoded in the worker thread that parses them (`_parse_all`), off the event loop.
_DOCUMENTS = "SELECT id, geometry::text, properties::text FROM geofences WHERE id = ANY(%s)"
_SET_HEAD = (
    "INSERT INTO engine_fence_state (device_id, ts, boot, seq, state)"
    " SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::integer[], %s::bigint[], %s::bytea[])"
    " ON CONFLICT (device_id) DO UPDATE SET ts = EXCLUDED.ts, boot = EXCLUDED.boot, seq = EXCLUDED.seq,"
    " state = EXCLUDED.state, updated_at = now()"
)
_FORGET_CHECKPOINTS = "DELETE FROM engine_fence_checkpoints WHERE device_id = %s AND (ts, boot, seq) > (%s, %s, %s)"
_ADD_CHECKPOINT = (
    "INSERT INTO engine_fence_checkpoints (device_id, ts, boot, seq, state)"
    " SELECT * FROM unnest(%s::text[], %s::timestamptz[], %s::integer[], %s::bigint[], %s::bytea[])"
    " ON CONFLICT (device_id, ts, boot, seq) DO UPDATE SET state = EXCLUDED.state"
)
_PRUNE = (
    "DELETE FROM engine_fence_checkpoints WHERE device_id = %(device)s AND ts < %(cutoff)s"
    " AND (ts, boot, seq) < (SELECT ts, boot, seq FROM engine_fence_checkpoints WHERE device_id = %(device)s"
    " AND ts < %(cutoff)s ORDER BY ts DESC, boot DESC, seq DESC LIMIT 1)"
)
_WINDOW_EVENTS = (
    "SELECT id, fence_id, kind, ts FROM geofence_events WHERE device_id = %s"
    " AND (confirmed_ts, confirmed_boot, confirmed_seq) >= (%s, %s, %s)"
)
# The fence's last event confirmed before a window: the start of the stay under way when the window begins.
_LAST_EVENT_BEFORE = (
    "SELECT kind, ts FROM geofence_events WHERE device_id = %s AND fence_id = %s"
    " AND (confirmed_ts, confirmed_boot, confirmed_seq) < (%s, %s, %s) ORDER BY ts DESC, id DESC LIMIT 1"
)
_DROP_EVENT = "DELETE FROM geofence_events WHERE id = %s"
_ADD_EVENT = (
    "INSERT INTO geofence_events (device_id, fence_id, kind, ts, crossed, confirmed_ts, confirmed_boot,"
    " confirmed_seq) VALUES (%s, %s, %s, %s, %s, %s, %s, %s) ON CONFLICT (device_id, fence_id, kind, ts) DO NOTHING"
    " RETURNING kind"
)
# Written at the end of the cycle, in this order (engine/cycle_writes.py): a re-run's checkpoints are
# forgotten before the window's first is written, and old ones pruned after.
WRITES: Final = (_FORGET_CHECKPOINTS, _ADD_CHECKPOINT, _PRUNE, _SET_HEAD, _ADD_EVENT)
RETURNING: Final = (_ADD_EVENT,)
COLUMNAR: Final = (_ADD_CHECKPOINT, _SET_HEAD)  # each event added returns its kind, for `count_events`

_Key = tuple[datetime, int, int]  # (ts, boot, seq): the engine's order of a device's samples
_encoder = msgspec.msgpack.Encoder()
_decoder = msgspec.msgpack.Decoder(DeviceFenceState)


@dataclass(slots=True)
class FenceReport:
    """What the fence stage did in one cycle, for the log and the tests."""

    points: int = 0
    rewinds: int = 0
    events: dict[str, int] = field(default_factory=dict)
    alert_events: dict[str, int] = field(default_factory=dict)  # of geofence rules' alerts


class FenceSet:
    """The active fences, loaded again only when `geofences` changed; one index per device group."""

    def __init__(self, tolerance_m: float = TOLERANCE_M) -> None:
        self.tolerance_m = tolerance_m
        self._version: tuple[Any, ...] | None = None
        self._fences: list[tuple[Fence, str | None]] = []
        self._indexes: dict[str | None, FenceIndex] = {}
        # Parsed fences by id, with the `updated_at` they were parsed at: a reload parses only what changed
        # (validating 10,000 fences takes seconds; one changed fence should not cost that).
        self._parsed: dict[int, tuple[datetime, Fence | None]] = {}

    def __bool__(self) -> bool:
        return bool(self._fences)

    async def refresh(self, cur: psycopg.AsyncCursor[Any]) -> bool:
        """Reload when the table changed since the last call; True when it did."""
        await cur.execute(_VERSION)
        version = await cur.fetchone()
        if version == self._version:
            return False
        await cur.execute(_FENCES)
        current = {row[0]: (row[1], row[2]) for row in await cur.fetchall()}
        changed = [
            fence_id for fence_id, (updated, _) in current.items() if self._parsed.get(fence_id, (None,))[0] != updated
        ]
        if changed:
            await cur.execute(_DOCUMENTS, (changed,))
            # In a worker thread: validating thousands of fences takes seconds, during which the event loop
            # must still heartbeat and keep its partitions' locks.
            parsed = await asyncio.to_thread(_parse_all, await cur.fetchall())
            for fence_id, fence in parsed:
                self._parsed[fence_id] = (current[fence_id][0], fence)
        self._parsed = {fence_id: parsed for fence_id, parsed in self._parsed.items() if fence_id in current}
        self._fences = [
            (fence, current[fence_id][1]) for fence_id, (_, fence) in sorted(self._parsed.items()) if fence is not None
        ]
        self._indexes, self._version = {}, version
        log.info("geofences loaded: %d (%d parsed again)", len(self._fences), len(changed))
        return True

    def index_for(self, group: str | None) -> FenceIndex:
        """The global fences and those of `group`, indexed (built on first use after a reload)."""
        index = self._indexes.get(group)
        if index is None:
            chosen = [fence for fence, scope in self._fences if scope is None or scope == group]
            index = self._indexes[group] = FenceIndex(chosen, self.tolerance_m)
        return index


def _json(text: str) -> Any:
    """A stored document, as psycopg's `json.loads` would give it: msgspec's decoder is faster and gives the
    same values, but for what it refuses and `json` accepts (a number beyond a float's range, read as inf)."""
    try:
        return msgspec.json.decode(text)
    except msgspec.DecodeError:
        return json.loads(text)


def _parse_all(rows: list[tuple[Any, ...]]) -> list[tuple[int, Fence | None]]:
    """Each stored fence parsed again, None for one the validation now refuses (logged)."""
    parsed: list[tuple[int, Fence | None]] = []
    for fence_id, geometry, properties in rows:
        feature = {"type": "Feature", "geometry": _json(geometry), "properties": _json(properties)}
        fence = parse_fence(str(fence_id), feature)
        if isinstance(fence, FenceRejected):
            # Validated when written; refused now only if the rules grew stricter since.
            log.warning("geofence %s is skipped: %s", fence_id, fence.reason)
            parsed.append((fence_id, None))
        else:
            parsed.append((fence_id, fence))
    return parsed


@dataclass(frozen=True, slots=True)
class FenceStart:
    """Where a device's fence evaluation restarts: after its head, or (a late point, or its first) at the
    checkpoint before its earliest new point."""

    key: _Key
    state: DeviceFenceState
    rewind: bool  # a re-run of points evaluated before
    after_head: bool  # `key` is the head's, evaluated already: the points start after it
    latest_checkpoint: datetime | None = None  # when not a rewind: the device time of the last checkpoint


async def read_starts(
    cur: psycopg.AsyncCursor[Any], heads: dict[str, Checkpoint | None], earliest: dict[str, datetime]
) -> dict[str, FenceStart]:
    """Each device's `FenceStart`, given its fence head and its earliest new point, read for all at once."""
    after_head = {d for d, head in heads.items() if head is not None and earliest[d] > head[0][0]}
    before = await read_checkpoints_before(cur, {d: ts for d, ts in earliest.items() if d not in after_head})
    starts: dict[str, FenceStart] = {}
    for device_id, head in heads.items():
        if device_id in after_head and head is not None:
            starts[device_id] = FenceStart(head[0], _decoder.decode(head[1]), rewind=False, after_head=True)
        elif device_id in before:
            key, state = before[device_id]
            starts[device_id] = FenceStart(key, _decoder.decode(state), rewind=head is not None, after_head=False)
        else:
            starts[device_id] = FenceStart(
                (earliest[device_id], -(2**31), -(2**63)), DeviceFenceState(), rewind=head is not None, after_head=False
            )
    latest = await read_latest_checkpoints(cur, [d for d, start in starts.items() if not start.rewind])
    return {
        d: start if start.rewind else FenceStart(start.key, start.state, False, start.after_head, latest.get(d))
        for d, start in starts.items()
    }


async def evaluate_fences(
    cur: psycopg.AsyncCursor[Any],
    fences: FenceSet,
    device: Device,
    start: FenceStart,
    samples: list[Row],
    *,
    report: FenceReport,
    writes: Writes,
    rules: Sequence[Rule] = (),
) -> None:
    """Run the device's points from `start` through its fences, store the events, and the alerts of the
    geofence `rules` that apply to the device. `samples` are the device's from `start` on, or earlier."""
    if not fences:
        return
    state, rewind = start.state, start.rewind
    rows = [
        (s[0], s[1], s[2], s[LAT], s[LON], s[SPEED])
        for s in samples
        if s[LAT] is not None
        and s[LON] is not None
        # the head itself was evaluated
        and ((s[0], s[1], s[2]) > start.key if start.after_head else (s[0], s[1], s[2]) >= start.key)
    ]
    if not rows:
        return
    report.points += len(rows)
    report.rewinds += rewind
    window_start: _Key = (rows[0][0], rows[0][1], rows[0][2])
    tracker = FenceTracker(device.id, fences.index_for(device.group), state)
    found: list[tuple[FenceEvent, _Key]] = []
    for ts, boot, seq, lat, lon, speed in rows:
        point = TrackPoint(ts=ts, seq=seq, lat=lat, lon=lon, speed_kmh=speed)
        found.extend((event, (ts, boot, seq)) for event in tracker.step(point))
    if rewind:
        writes.add(_FORGET_CHECKPOINTS, (device.id, *window_start))
        _checkpoint(writes, device.id, window_start, state)
    else:
        latest = start.latest_checkpoint
        if latest is None or window_start[0] - latest >= CHECKPOINT_SPACING:
            _checkpoint(writes, device.id, window_start, state)
            writes.add(_PRUNE, {"device": device.id, "cutoff": window_start[0] - REWIND_HORIZON})
    await _store_events(cur, device.id, window_start, found, replace=rewind, report=report, writes=writes)
    for rule in rules:
        await _alert(
            cur,
            rule,
            device.id,
            (state, window_start),
            found=found,
            tracker=tracker,
            rewind=rewind,
            report=report,
            writes=writes,
        )
    last = rows[-1]
    writes.add(_SET_HEAD, (device.id, last[0], last[1], last[2], _encoder.encode(tracker.state)))


def count_events(returned: dict[str, list[Row]], report: FenceReport) -> None:
    """Count the events the cycle's writes added (`_ADD_EVENT` returns the kind of each)."""
    for (kind,) in returned.get(_ADD_EVENT, ()):
        report.events[kind] = report.events.get(kind, 0) + 1


async def _alert(
    cur: psycopg.AsyncCursor[Any],
    rule: Rule,
    device_id: str,
    before: tuple[DeviceFenceState, _Key],
    *,
    found: list[tuple[FenceEvent, _Key]],
    tracker: FenceTracker,
    rewind: bool,
    report: FenceReport,
    writes: Writes,
) -> None:
    """The alerts of one geofence rule from the window on, as its fence's events in the window say."""
    fence_id, (state, window_start) = rule.fence_id or "", before
    side = side_of(rule.condition.op)
    events = tuple((event.kind, event.at) for event, _ in found if event.fence_id == fence_id)
    on_side_before = last_on_side(state, fence_id, side == "inside")
    carried = None
    if on_side_before is not None:
        await cur.execute(_LAST_EVENT_BEFORE, (device_id, int(fence_id), *window_start))
        row = await cur.fetchone()
        if row is not None and row[0] == ("enter" if side == "inside" else "exit"):
            carried = row[1]
    if carried is None and not events and not rewind:
        return  # no stay to decide, and no alert of an earlier run of this window to take back
    window = FenceWindow(carried, events, tracker.last_on_side(fence_id, side == "inside"))
    message = f"{rule.name}: {fence_condition_text(rule.condition.op, rule.condition.for_s, rule.fence_name)}"
    episodes = fence_episodes(side, rule.condition.for_s, window, not_before=rule.created_at, message=message)
    # A crossing found in the window lies after the last point before it on its old side, which may precede
    # the window's first point: alerts are re-decided from there (no other stay of this fence began since).
    memory = state.fences.get(fence_id)
    since = memory.anchor.ts if memory is not None else state.previous.ts if state.previous else window_start[0]
    await reconcile(
        cur,
        AlertTarget(rule.id, device_id, rule.severity),
        episodes,
        since=min(since, window_start[0]),
        anchor=carried or window_start[0],
        counts=report.alert_events,
        writes=writes,
    )


def _checkpoint(writes: Writes, device_id: str, key: _Key, state: DeviceFenceState) -> None:
    writes.add(_ADD_CHECKPOINT, (device_id, *key, _encoder.encode(state)))


async def _store_events(
    cur: psycopg.AsyncCursor[Any],
    device_id: str,
    window_start: _Key,
    found: list[tuple[FenceEvent, _Key]],
    *,
    replace: bool,
    report: FenceReport,
    writes: Writes,
) -> None:
    """Insert the window's events (at the cycle's end; `count_events` counts those added); on a re-run,
    first delete those of the window it no longer finds."""
    if replace:
        wanted = {(int(e.fence_id), e.kind, e.at) for e, _ in found}
        await cur.execute(_WINDOW_EVENTS, (device_id, *window_start))
        for event_id, fence_id, kind, ts in await cur.fetchall():
            if (fence_id, kind, ts) not in wanted:
                await cur.execute(_DROP_EVENT, (event_id,))
                report.events["dropped"] = report.events.get("dropped", 0) + 1
    for event, (ts, boot, seq) in found:
        writes.add(_ADD_EVENT, (device_id, int(event.fence_id), event.kind, event.at, event.crossed, ts, boot, seq))
