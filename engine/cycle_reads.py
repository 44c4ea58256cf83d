"""What a cycle reads before it evaluates, each in one statement for all of the cycle's devices.

A cycle evaluates a few dozen devices; reading each device's heads, restart state and samples one device
at a time cost a round trip per statement and device, which was most of the engine's time. Here each read
covers every device of the cycle (`unnest` of arrays, one index probe per device on the server), and the
samples are read once per device for all three stages, from the earliest point any of them restarts at:
each stage keeps the rows from its own start (`engine/store.py`, `engine/fence_stage.py`,
`engine/trip_stage.py`).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg

from engine.threshold import RuleState, SampleKey
from engine.trips import Place, Stop
from models.telemetry import METRIC_COLUMNS

# A sample row, as every stage reads it: its key, the rule metrics (`RULE_COLUMNS`, at 3 + their index),
# then the position and the ignition.
RULE_COLUMNS: Final = (*METRIC_COLUMNS, "speed")  # models.rules.RULE_METRICS, each a column of `telemetry`
LAT: Final = 3 + len(RULE_COLUMNS)
LON: Final = LAT + 1
IGNITION: Final = LAT + 2
SPEED: Final = 3 + RULE_COLUMNS.index("speed")
ODOMETER: Final = 3 + RULE_COLUMNS.index("odometer")
FUEL: Final = 3 + RULE_COLUMNS.index("fuel")

_HEADS = (
    "SELECT d.id, h.ts, h.boot, h.seq, f.ts, f.boot, f.seq, f.state, t.ts, t.resume_at"
    " FROM unnest(%s::text[]) AS d (id) LEFT JOIN engine_heads h ON h.device_id = d.id"
    " LEFT JOIN engine_fence_state f ON f.device_id = d.id LEFT JOIN engine_trip_heads t ON t.device_id = d.id"
)
# The state of each (rule, device) after its latest transition: an index probe per pair.
_LATEST_STATES = (
    "SELECT p.rule_id, p.device_id, t.phase, t.since, t.clear_since"
    " FROM unnest(%s::bigint[], %s::text[]) AS p (rule_id, device_id) CROSS JOIN LATERAL"
    " (SELECT phase, since, clear_since FROM engine_transitions WHERE rule_id = p.rule_id"
    " AND device_id = p.device_id ORDER BY ts DESC, boot DESC, seq DESC LIMIT 1) AS t"
)
_CHECKPOINTS_BEFORE = (
    "SELECT d.id, c.ts, c.boot, c.seq, c.state FROM unnest(%s::text[], %s::timestamptz[]) AS d (id, before)"
    " CROSS JOIN LATERAL (SELECT ts, boot, seq, state FROM engine_fence_checkpoints WHERE device_id = d.id"
    " AND ts < d.before ORDER BY ts DESC, boot DESC, seq DESC LIMIT 1) AS c"
)
_LATEST_CHECKPOINTS = (
    "SELECT d.id, c.ts FROM unnest(%s::text[]) AS d (id) CROSS JOIN LATERAL"
    " (SELECT max(ts) AS ts FROM engine_fence_checkpoints WHERE device_id = d.id) AS c WHERE c.ts IS NOT NULL"
)
# The two stops `engine.trips.resume_start` may choose: the last one, and the last complete one ending by
# `new_from`.
_STOPS = (
    "SELECT d.id, s.started_at, s.ended_at, s.lat, s.lon, s.duration_s, s.complete"
    " FROM unnest(%s::text[], %s::timestamptz[]) AS d (id, new_from) CROSS JOIN LATERAL"
    " ((SELECT started_at, ended_at, lat, lon, duration_s, complete FROM stops WHERE device_id = d.id"
    " AND complete AND ended_at <= d.new_from ORDER BY started_at DESC LIMIT 1)"
    " UNION (SELECT started_at, ended_at, lat, lon, duration_s, complete FROM stops WHERE device_id = d.id"
    " ORDER BY started_at DESC LIMIT 1)) AS s ORDER BY d.id, s.started_at"
)
# An `ignition` metric has no column of its own: it is in `extra`, a number when sent by a device.
_SAMPLES = (
    f"SELECT d.id, s.* FROM unnest(%s::text[], %s::timestamptz[]) AS d (id, since) CROSS JOIN LATERAL"
    f" (SELECT ts, boot, seq, {', '.join(RULE_COLUMNS)}, lat, lon,"
    " CASE WHEN jsonb_typeof(extra->'ignition') = 'number' THEN (extra->>'ignition')::float8 END"
    " FROM telemetry WHERE device_id = d.id AND ts >= COALESCE(d.since, '-infinity'::timestamptz)"
    " ORDER BY ts, boot, seq) AS s"
)

Row = tuple[Any, ...]
Checkpoint = tuple[tuple[datetime, int, int], bytes]  # a fence state and the point it is the state before


@dataclass(frozen=True, slots=True)
class Heads:
    """A device's last evaluated point in each stage (None: never evaluated there)."""

    rules: SampleKey | None
    fences: Checkpoint | None  # the fence state after the point
    trips: tuple[datetime, datetime | None] | None  # the point's ts and the trip checkpoint (`resume_at`)


async def read_heads(cur: psycopg.AsyncCursor[Any], devices: list[str]) -> dict[str, Heads]:
    """Every device's heads."""
    await cur.execute(_HEADS, (devices,))
    return {
        r[0]: Heads(
            None if r[1] is None else SampleKey(r[1], r[2], r[3]),
            None if r[4] is None else ((r[4], r[5], r[6]), r[7]),
            None if r[8] is None else (r[8], r[9]),
        )
        for r in await cur.fetchall()
    }


async def read_latest_states(
    cur: psycopg.AsyncCursor[Any], pairs: list[tuple[int, str]]
) -> dict[tuple[int, str], RuleState]:
    """Each (rule, device)'s state after its latest transition; a pair with none is absent (idle)."""
    if not pairs:
        return {}
    await cur.execute(_LATEST_STATES, ([p[0] for p in pairs], [p[1] for p in pairs]))
    return {(r[0], r[1]): RuleState(r[2], r[3], r[4]) for r in await cur.fetchall()}


async def read_checkpoints_before(
    cur: psycopg.AsyncCursor[Any], before: Mapping[str, datetime]
) -> dict[str, Checkpoint]:
    """Each device's last fence checkpoint before its instant; a device with none is absent."""
    if not before:
        return {}
    await cur.execute(_CHECKPOINTS_BEFORE, (list(before), list(before.values())))
    return {r[0]: ((r[1], r[2], r[3]), r[4]) for r in await cur.fetchall()}


async def read_latest_checkpoints(cur: psycopg.AsyncCursor[Any], devices: list[str]) -> dict[str, datetime]:
    """The device time of each device's latest fence checkpoint; a device with none is absent."""
    if not devices:
        return {}
    await cur.execute(_LATEST_CHECKPOINTS, (devices,))
    return {r[0]: r[1] for r in await cur.fetchall()}


async def read_stops(cur: psycopg.AsyncCursor[Any], new_from: Mapping[str, datetime]) -> dict[str, list[Stop]]:
    """Per device, the stops `resume_start` chooses from, in time order."""
    stops: dict[str, list[Stop]] = {device: [] for device in new_from}
    await cur.execute(_STOPS, (list(new_from), list(new_from.values())))
    for r in await cur.fetchall():
        stops[r[0]].append(
            Stop(device_id=r[0], start_at=r[1], end_at=r[2], place=Place(r[3], r[4]), duration_s=r[5], complete=r[6])
        )
    return stops


async def read_samples(cur: psycopg.AsyncCursor[Any], since: Mapping[str, datetime | None]) -> dict[str, list[Row]]:
    """Per device, its samples from device time `since` on (None: all), in (ts, boot, seq) order, as
    rows laid out as described at `RULE_COLUMNS`."""
    samples: dict[str, list[Row]] = {device: [] for device in since}
    await cur.execute(_SAMPLES, (list(since), list(since.values())))
    for r in await cur.fetchall():
        samples[r[0]].append(r[1:])
    return samples
