"""Enter and exit events of one device against a set of fences, by device time, with a hysteresis band.

A device becomes inside a fence once a point is more than `tolerance_m` inside its border, and outside
once a point is more than `tolerance_m` outside; a point in the band between keeps the previous state,
so GPS jitter along a border does not flap.

The time of an event is the crossing itself, not the point that confirmed it: the border crossing on
the segment from the last point on the old side (by the raw test, without the band) to the first point
after it on the new side, interpolated linearly in time by where on that segment the border lies. With
jitter the device may cross and recross inside the band; the event takes the last crossing before it
stayed across. The interpolation assumes straight, steady motion between two fixes; with fixes seconds
apart that is within metres of the truth, better than the time of the confirming point, which lags the
crossing by however long the band took to traverse.

Evaluation is a fold over the device's points in `engine.track.device_order`: the same state and the
same points give the same events, in the same order. A late point is handled by re-evaluating from a
state saved before it (`FenceTracker.state`), which yields exactly the events an in-order delivery would
have: a late point never fires a false exit, because the events of the window are replaced, not added
to. Events carry their natural key (device, fence, kind, at) for idempotent storage.

The first point of a device inside a fence yields an enter at that point's own time with `crossed`
False: the device was first seen there, no crossing was observed.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime, timedelta
from typing import Literal

import msgspec

from engine.fence_index import FenceIndex
from engine.track import TrackPoint
from models.fences.shapes import Fence

FenceEventKind = Literal["enter", "exit"]


class FenceEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A device entered or left a fence at device time `at`."""

    device_id: str
    fence_id: str
    kind: FenceEventKind
    at: datetime
    crossed: bool = True  # False: not a crossing, the device's first point was already inside


class FenceMemory(msgspec.Struct, frozen=True, kw_only=True):
    """A device's state for one fence it is inside, or is in the band of, ready to be stored.

    `anchor` is the last point on the side of `inside` (raw test); `across` the first point after it on
    the other side, while the band has not been left.
    """

    inside: bool
    anchor: TrackPoint
    across: TrackPoint | None = None


class DeviceFenceState(msgspec.Struct, frozen=True, kw_only=True):
    """Everything the evaluation of one device carries from one point to the next.

    A fence absent from `fences` is one the device is outside of, with no crossing pending.
    """

    previous: TrackPoint | None = None
    fences: dict[str, FenceMemory] = {}


def last_on_side(state: DeviceFenceState, fence_id: str, inside: bool) -> datetime | None:
    """`FenceTracker.last_on_side` of a stored state."""
    memory = state.fences.get(fence_id)
    if memory is None:
        # Outside with nothing pending: the previous point was outside (or nowhere near the fence).
        return None if inside or state.previous is None else state.previous.ts
    return memory.anchor.ts if memory.inside == inside else None


def _crossing_time(fence: Fence, before: TrackPoint, after: TrackPoint) -> datetime:
    fraction = fence.last_crossing((before.lon, before.lat), (after.lon, after.lat))
    if fraction is None:
        fraction = 1.0  # rounding at a vertex can hide the crossing; the later point is the safe bound
    return before.ts + (after.ts - before.ts) * fraction


class FenceTracker:
    """Evaluates one device's points, one at a time in device order, against the fences of an index."""

    def __init__(self, device_id: str, index: FenceIndex, state: DeviceFenceState | None = None) -> None:
        self.device_id = device_id
        self._index = index
        state = state or DeviceFenceState()
        self._previous = state.previous
        self._memory = dict(state.fences)

    @property
    def state(self) -> DeviceFenceState:
        """The state after the last point, to store and to resume from."""
        return DeviceFenceState(previous=self._previous, fences=dict(self._memory))

    def inside(self) -> frozenset[str]:
        """The fences the device is inside of now."""
        return frozenset(fence_id for fence_id, memory in self._memory.items() if memory.inside)

    def last_on_side(self, fence_id: str, inside: bool) -> datetime | None:
        """The time of the device's last point on this side of the fence's border (raw test, without the
        band) while the device is on that side; None when it is on the other side, or has no point yet.

        A crossing back is never before it: it lies between that point and the first one across.
        """
        return last_on_side(DeviceFenceState(previous=self._previous, fences=self._memory), fence_id, inside)

    def step(self, point: TrackPoint) -> list[FenceEvent]:
        """The events this point confirms, in fence id order."""
        near = self._index.near(point.lon, point.lat)
        events = []
        for fence_id in sorted(near.keys() | self._memory.keys()):
            fence = near.get(fence_id) or self._index.get(fence_id)
            if fence is None:
                del self._memory[fence_id]  # the fence was removed: nothing left to leave or enter
                continue
            event = self._evaluate(fence, fence_id in near, point)
            if event is not None:
                events.append(event)
        self._previous = point
        return events

    def _evaluate(self, fence: Fence, is_near: bool, point: TrackPoint) -> FenceEvent | None:
        fence_id = fence.fence_id
        raw_inside = is_near and fence.contains(point.lon, point.lat)
        memory = self._memory.get(fence_id)
        if memory is None:
            if not raw_inside:
                return None
            if self._previous is None:
                self._memory[fence_id] = FenceMemory(inside=True, anchor=point)
                return FenceEvent(device_id=self.device_id, fence_id=fence_id, kind="enter", at=point.ts, crossed=False)
            # Outside with nothing pending: the device's previous point was the last one outside.
            memory = FenceMemory(inside=False, anchor=self._previous)
        if raw_inside == memory.inside:
            if raw_inside:
                self._memory[fence_id] = FenceMemory(inside=True, anchor=point)
            else:
                self._memory.pop(fence_id, None)
            return None
        across = memory.across or point
        # Off the grown box means farther than the tolerance; the distance is computed only when needed.
        if is_near and fence.near_border(point.lon, point.lat, self._index.tolerance_m):
            self._memory[fence_id] = FenceMemory(inside=memory.inside, anchor=memory.anchor, across=across)
            return None
        at = _crossing_time(fence, memory.anchor, across)
        if memory.inside:
            self._memory.pop(fence_id, None)
        else:
            self._memory[fence_id] = FenceMemory(inside=True, anchor=point)
        kind: FenceEventKind = "exit" if memory.inside else "enter"
        return FenceEvent(device_id=self.device_id, fence_id=fence_id, kind=kind, at=at)


def fence_events(
    device_id: str, points: Iterable[TrackPoint], index: FenceIndex, state: DeviceFenceState | None = None
) -> tuple[list[FenceEvent], DeviceFenceState]:
    """The events of a device's points (in device order) from `state`, and the state after them."""
    tracker = FenceTracker(device_id, index, state)
    events = [event for point in points for event in tracker.step(point)]
    return events, tracker.state


class FenceVisit(msgspec.Struct, frozen=True, kw_only=True):
    """A stay of a device inside a fence; None ends are beyond the events it was built from.

    Its natural key is (device_id, fence_id, entered_at).
    """

    device_id: str
    fence_id: str
    entered_at: datetime | None
    exited_at: datetime | None


def visits(events: Sequence[FenceEvent]) -> list[FenceVisit]:
    """Pair one device's enter and exit events (in order) into visits: closed ones as they ended, then open ones."""
    open_since: dict[str, datetime | None] = {}
    found = []
    for event in events:
        if event.kind == "enter":
            open_since[event.fence_id] = event.at
            continue
        entered = open_since.pop(event.fence_id, None)
        found.append(
            FenceVisit(device_id=event.device_id, fence_id=event.fence_id, entered_at=entered, exited_at=event.at)
        )
    found.extend(
        FenceVisit(device_id=events[0].device_id, fence_id=fence_id, entered_at=entered, exited_at=None)
        for fence_id, entered in open_since.items()
    )
    return found


def time_inside(visits_: Iterable[FenceVisit], start: datetime, end: datetime) -> dict[str, timedelta]:
    """Per fence, how long the device was inside during [start, end).

    A visit still open counts until `end`: pass the time of the device's latest point as `end` to
    count only what is known.
    """
    totals: dict[str, timedelta] = {}
    for visit in visits_:
        begin = max(start, visit.entered_at) if visit.entered_at is not None else start
        finish = min(end, visit.exited_at) if visit.exited_at is not None else end
        if finish > begin:
            totals[visit.fence_id] = totals.get(visit.fence_id, timedelta()) + (finish - begin)
    return totals
