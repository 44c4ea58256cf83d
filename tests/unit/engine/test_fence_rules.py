"""Geofence rules' episodes from enter and exit events: stays, durations, carried stays, windows split anywhere."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

from engine.episodes import Episode
from engine.fence_index import FenceIndex
from engine.fence_rules import FenceWindow, Side, fence_episodes, side_of
from engine.geofence import DeviceFenceState, FenceEvent, FenceTracker, last_on_side
from engine.track import TrackPoint
from models.fences.geojson import parse_fence
from models.fences.shapes import CircleFence, PolygonFence

T0 = datetime(2026, 12, 1, 8, tzinfo=UTC)
NEVER = T0 - timedelta(days=1)  # a rule created before every point
SQUARE = [[10.0, 50.0], [10.01, 50.0], [10.01, 50.01], [10.0, 50.01], [10.0, 50.0]]  # ~715 m east-west


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


def window(*events: tuple[str, float], carried: float | None = None, last_on_side: float | None = None) -> FenceWindow:
    return FenceWindow(
        None if carried is None else at(carried),
        tuple((kind, at(s)) for kind, s in events),
        None if last_on_side is None else at(last_on_side),
    )


def test_fence_rules_a_stay_longer_than_for_s_is_raised_at_enter_plus_for_s_and_cleared_at_the_exit() -> None:
    found = fence_episodes("inside", 600, window(("enter", 100), ("exit", 800)), not_before=NEVER, message="m")
    assert found == {at(100): Episode(at(100), raised_at=at(700), cleared_at=at(800), message="m")}


def test_fence_rules_a_shorter_stay_raises_nothing() -> None:
    assert fence_episodes("inside", 600, window(("enter", 100), ("exit", 699)), not_before=NEVER) == {}


def test_fence_rules_an_open_stay_is_raised_once_a_point_inside_reaches_the_limit() -> None:
    short = window(("enter", 100), last_on_side=699)
    assert fence_episodes("inside", 600, short, not_before=NEVER) == {}
    reached = window(("enter", 100), last_on_side=700)
    assert fence_episodes("inside", 600, reached, not_before=NEVER) == {at(100): Episode(at(100), raised_at=at(700))}


def test_fence_rules_a_stay_carried_into_the_window_is_the_same_episode() -> None:
    # Entered at 100 before the window; the window holds only the exit.
    found = fence_episodes("inside", 600, window(("exit", 900), carried=100), not_before=NEVER)
    assert found == {at(100): Episode(at(100), raised_at=at(700), cleared_at=at(900))}
    still = fence_episodes("inside", 600, window(carried=100, last_on_side=1000), not_before=NEVER)
    assert still == {at(100): Episode(at(100), raised_at=at(700))}


def test_fence_rules_entered_alerts_each_stay_from_its_enter_to_its_exit() -> None:
    events = window(("enter", 10), ("exit", 20), ("enter", 30), last_on_side=31)
    assert fence_episodes("inside", 0, events, not_before=NEVER) == {
        at(10): Episode(at(10), raised_at=at(10), cleared_at=at(20)),
        at(30): Episode(at(30), raised_at=at(30)),
    }


def test_fence_rules_left_alerts_from_the_exit_until_the_next_enter_or_after_for_s_outside() -> None:
    events = window(("enter", 0), ("exit", 100), ("enter", 160), ("exit", 300), last_on_side=450)
    assert fence_episodes("outside", 0, events, not_before=NEVER) == {
        at(100): Episode(at(100), raised_at=at(100), cleared_at=at(160)),
        at(300): Episode(at(300), raised_at=at(300)),
    }
    # Outside for more than 120 s: the first absence (60 s) does not count, the open one does from 420 s.
    assert fence_episodes("outside", 120, events, not_before=NEVER) == {at(300): Episode(at(300), raised_at=at(420))}


def test_fence_rules_stays_begun_before_the_rule_was_created_are_not_alerted() -> None:
    events = window(("exit", 50), ("enter", 100), last_on_side=200, carried=0)
    assert fence_episodes("inside", 0, events, not_before=at(60)) == {at(100): Episode(at(100), raised_at=at(100))}


def test_fence_rules_the_side_of_each_op() -> None:
    assert [side_of(op) for op in ("entered", "inside", "left")] == ["inside", "inside", "outside"]


# A truck at latitude 50.005 (0.0001° of longitude is 7.15 m there) crossing the square's western border.
def track(seed: int) -> list[TrackPoint]:
    """A random walk across the border a few times, a fix every 10 s, jittering in the band at times."""
    rng = random.Random(seed)
    lon, points = 9.998, []
    for i in range(240):
        lon += rng.choice((-1, 1)) * rng.uniform(0.00005, 0.0006)
        lon = min(max(lon, 9.996), 10.004)
        points.append(TrackPoint(ts=at(10 * i), seq=i, lat=50.005, lon=lon))
    return points


def in_windows(
    side: Side, for_s: int, points: list[TrackPoint], index: FenceIndex, cuts: list[int]
) -> dict[datetime, Episode]:
    """The episodes as the engine finds them, window by window: each window's episodes replace those of the
    same start, the stay under way before a window taken from the last event before it."""
    found: dict[datetime, Episode] = {}
    events: list[FenceEvent] = []
    state = DeviceFenceState()
    for begin, end in zip([0, *cuts], [*cuts, len(points)], strict=True):
        tracker = FenceTracker("truck", index, state)
        new = [event for p in points[begin:end] for event in tracker.step(p)]
        carried = None
        opening = "enter" if side == "inside" else "exit"
        if last_on_side(state, "yard", side == "inside") is not None and events and events[-1].kind == opening:
            carried = events[-1].at
        pairs = tuple((e.kind, e.at) for e in new)
        current = FenceWindow(carried, pairs, tracker.last_on_side("yard", side == "inside"))
        found |= fence_episodes(side, for_s, current, not_before=NEVER)
        events.extend(new)
        state = tracker.state
    return found


def test_fence_rules_windows_split_anywhere_give_the_episodes_of_the_whole_track() -> None:
    yard = parse_fence("yard", {"type": "Polygon", "coordinates": [SQUARE]})
    assert isinstance(yard, PolygonFence | CircleFence)
    index = FenceIndex([yard], 20.0)
    rules: list[tuple[Side, int]] = [("inside", 0), ("inside", 60), ("outside", 0), ("outside", 90)]
    episodes = 0
    for seed in range(12):
        points = track(seed)
        for side, for_s in rules:
            whole = in_windows(side, for_s, points, index, [])
            episodes += len(whole)
            rng = random.Random(seed)
            for _ in range(5):
                cuts = sorted(rng.sample(range(1, len(points)), rng.randint(1, 8)))
                assert in_windows(side, for_s, points, index, cuts) == whole, (seed, side, for_s, cuts)
    assert episodes > 50  # the walks cross the border often, and stay on each side long and briefly
