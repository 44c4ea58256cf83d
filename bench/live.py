"""Live fan-out benchmark: how fast one API instance's hub routes stream updates to its connections.

In process, no network: `LiveHub.publish` for a fleet of DEVICES devices moving about, with CONNECTIONS
connections subscribed by named devices, by group, or by a box of the map (one selection kind per
run, and a mixed run). Prints updates routed per second and deliveries (offers to outboxes) per
second; the outboxes are drained between rounds, as a fast client's send loop would.

    .venv/bin/python bench/live.py --connections 1000
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from api.live.directory import GroupDirectory  # noqa: E402
from api.live.hub import LiveHub, Subscriber  # noqa: E402
from api.live.outbox import Outbox  # noqa: E402
from api.live.selection import BBox, Selection  # noqa: E402
from api.live.update import LiveUpdate  # noqa: E402
from models.state import DeviceState, FieldValue, PositionState  # noqa: E402

DEVICES = 10_000
GROUPS = 50
TS = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


class FixedGroups(GroupDirectory):
    """The directory with a generated map instead of one read from PostgreSQL."""

    def __init__(self, groups: dict[str, str]) -> None:
        pool: Any = None
        super().__init__(pool, refresh_s=3600)
        self._group_of = groups


def updates(count: int, rng: random.Random) -> list[LiveUpdate]:
    """Every other update moves its device (somewhere in Europe), the others change a metric."""
    out = []
    for n in range(count):
        device_id = f"truck-{rng.randrange(DEVICES):05d}"
        if n % 2:
            position = PositionState(rng.uniform(40, 60), rng.uniform(-5, 25), TS, n)
            state = DeviceState(device_id, TS, position=position)
        else:
            state = DeviceState(device_id, TS, metrics={"fuel": FieldValue(50.0, TS, n)})
        out.append(LiveUpdate(device_id, state, f"{n + 1}-0"))
    return out


def selection(kind: str, rng: random.Random) -> Selection:
    if kind == "devices":
        return Selection(devices={f"truck-{rng.randrange(DEVICES):05d}" for _ in range(20)})
    if kind == "group":
        return Selection(groups={f"group-{rng.randrange(GROUPS)}"})
    lon, lat = rng.uniform(-5, 23), rng.uniform(40, 58)
    return Selection(boxes={BBox(lon, lat, lon + 2, lat + 2): set()})


async def run(kind: str, connections: int, count: int, seed: int) -> tuple[float, float]:
    rng = random.Random(seed)
    groups = {f"truck-{d:05d}": f"group-{d % GROUPS}" for d in range(DEVICES)}
    hub = LiveHub(FixedGroups(groups))
    subscribers = []
    for n in range(connections):
        chosen = kind if kind != "mixed" else ("devices", "group", "bbox")[n % 3]
        subscriber = Subscriber(Outbox(), None, selection(chosen, rng))
        hub.attach(subscriber)
        subscribers.append(subscriber)
    stream = updates(count, rng)
    delivered = 0
    started = time.perf_counter()
    for start in range(0, count, 1000):
        for update in stream[start : start + 1000]:
            hub.publish(update)
        for subscriber in subscribers:  # a fast client: its send loop takes everything
            if subscriber.outbox.pending:
                delivered += len((await subscriber.outbox.take()).updates)
    elapsed = time.perf_counter() - started
    return count / elapsed, delivered / elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--connections", type=int, default=1000)
    parser.add_argument("--updates", type=int, default=50_000)
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    print(f"{DEVICES} devices in {GROUPS} groups, {args.connections} connections, {args.updates} updates")
    for kind in ("devices", "group", "bbox", "mixed"):
        routed, delivered = asyncio.run(run(kind, args.connections, args.updates, args.seed))
        print(f"{kind:>8}: {routed:>10,.0f} updates/s routed, {delivered:>10,.0f} deliveries/s")


if __name__ == "__main__":
    main()
