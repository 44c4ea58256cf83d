"""Geofence alert rules: the episodes of one rule and device from its fence's enter and exit events. Pure.

An episode is a stay on one side of the fence's border: inside, from an enter to the exit (ops `entered`
and `inside`), or outside, from an exit to the next enter (op `left`). Its alert is raised once the stay has
lasted `for_s` (at `started_at + for_s`; `entered` and, without `for_s`, `left`: at once), and cleared
when the stay ends. A stay still under way has reached `for_s` only when a point of the device, on that
side of the border by the raw test, lies at or after `started_at + for_s`: the crossing that ends a stay
is never before the last point on its side, so an alert raised this way is never taken back by points
that continue the track in order. A closed stay has reached it when it ended at or after that instant.

Everything is a function of the events (interpolated crossing times) and that last point, so a window
evaluated again after a late point gives the episodes an in-order delivery would have, and the stay's
start is the episode's natural key.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Literal

from engine.episodes import Episode

Side = Literal["inside", "outside"]


@dataclass(frozen=True, slots=True)
class FenceWindow:
    """What a window of one device's points says about one fence.

    `carried` is the start of the stay on the rule's side under way before the window (None: the device
    was on the other side, or never crossed); `events` the (kind, time) of the fence's enter and exit events
    confirmed in the window, in order; `last_on_side` the time of the device's last point on the rule's
    side after the window, when it is still there (None: it is on the other side).
    """

    carried: datetime | None
    events: tuple[tuple[str, datetime], ...]
    last_on_side: datetime | None


def side_of(op: str) -> Side:
    """The side of the border whose stays a geofence rule's op alerts on."""
    return "outside" if op == "left" else "inside"


def fence_episodes(
    side: Side, for_s: int, window: FenceWindow, *, not_before: datetime, message: str = ""
) -> dict[datetime, Episode]:
    """The episodes (by start) of the stays on `side` the window touches that lasted `for_s`.

    A stay that began before `not_before` (the rule's creation) is not alerted: a rule does not search the
    history for alerts nobody asked for then.
    """
    limit = timedelta(seconds=for_s)
    episodes: dict[datetime, Episode] = {}
    for started_at, ended_at in _stays(side, window.carried, window.events):
        if started_at < not_before:
            continue
        due = started_at + limit
        reached = (
            ended_at >= due if ended_at is not None else window.last_on_side is not None and window.last_on_side >= due
        )
        if reached:
            episodes[started_at] = Episode(started_at, raised_at=due, cleared_at=ended_at, message=message)
    return episodes


def _stays(
    side: Side, carried: datetime | None, events: Iterable[tuple[str, datetime]]
) -> list[tuple[datetime, datetime | None]]:
    """(start, end) of each stay on `side`, the last one with end None while it lasts."""
    opening = "enter" if side == "inside" else "exit"
    stays: list[tuple[datetime, datetime | None]] = []
    start = carried
    for kind, at in events:
        if kind == opening:
            start = at
        elif start is not None:
            stays.append((start, at))
            start = None
    if start is not None:
        stays.append((start, None))
    return stays
