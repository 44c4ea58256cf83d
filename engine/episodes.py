"""The alerts of one rule and device brought in line with the episodes an evaluation found.

An episode is one alert's worth of a condition: its natural key is (rule, device, `started_at`), so the
same episode found again is the same row. Threshold rules (`engine/store.py`) and geofence rules
(`engine/fence_stage.py`) both evaluate a window of a device's points, from a restart state, and hand the
episodes it touches here: an alert of the window whose episode no longer happens is retracted, one whose
clearing no longer happens is reopened, and alerts an operator cleared (or the rule's removal) stay cleared.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import psycopg

from engine.cycle_writes import Writes

_ALERTS_FROM = (
    "SELECT id, started_at, state, acknowledged_at, cleared_at, clear_reason FROM alerts"
    " WHERE rule_id = %s AND device_id = %s AND (started_at >= %s OR started_at = %s)"
)
_INSERT_ALERT = (
    "INSERT INTO alerts (rule_id, device_id, started_at, raised_at, severity, state, value, message,"
    " cleared_at, clear_reason) VALUES (%s, %s, %s, %s, %s, %s, %s, %s, %s, %s)"
    " ON CONFLICT DO NOTHING RETURNING id"
)
_RETRACT = (
    "UPDATE alerts SET state = 'retracted', cleared_at = NULL, clear_reason = NULL, updated_at = now() WHERE id = %s"
)
_CLEAR = (
    "UPDATE alerts SET state = 'cleared', cleared_at = %s, clear_reason = 'condition', cleared_by = NULL,"
    " updated_at = now() WHERE id = %s"
)
_REOPEN = (
    "UPDATE alerts SET state = CASE WHEN acknowledged_at IS NULL THEN 'active' ELSE 'acknowledged' END,"
    " cleared_at = NULL, clear_reason = NULL, cleared_by = NULL, updated_at = now(),"
    " raised_at = COALESCE(%s, raised_at), value = COALESCE(%s, value) WHERE id = %s"
)
_EVENT = "INSERT INTO alert_events (alert_id, kind) VALUES (%s, %s)"
# Written at the end of the cycle (engine/cycle_writes.py), in the order they were found: nothing in the
# cycle reads them back. The alerts' own changes are written at once, in order: at most one alert of a rule
# and device is open (`alerts_one_open_idx`), so a retraction must precede the insert that replaces it.
WRITES: Final = (_EVENT,)


@dataclass(slots=True)
class Episode:
    """One alert's worth of a condition. `raised_at` None: under way before the window, raised before it."""

    started_at: datetime
    raised_at: datetime | None = None
    value: float | None = None
    cleared_at: datetime | None = None
    message: str = ""


@dataclass(frozen=True, slots=True)
class AlertTarget:
    """Whose alerts: one rule (with the severity its alerts take) and one device."""

    rule_id: int
    device_id: str
    severity: str


async def reconcile(
    cur: psycopg.AsyncCursor[Any],
    target: AlertTarget,
    episodes: Mapping[datetime, Episode],
    *,
    since: datetime,
    anchor: datetime,
    counts: dict[str, int],
    writes: Writes,
) -> None:
    """Make the alerts that started at or after `since`, and the one that started at `anchor` (the episode
    under way at the restart), what `episodes` says, writing an event for each change into `counts`."""
    await cur.execute(_ALERTS_FROM, (target.rule_id, target.device_id, since, anchor))
    existing = {row[1]: row for row in await cur.fetchall()}
    for started_at, row in existing.items():
        kept_by_operator = row[5] in ("operator", "rule_removed")
        if started_at not in episodes and not kept_by_operator and row[2] != "retracted":
            await cur.execute(_RETRACT, (row[0],))
            _event(writes, row[0], "retracted", counts)
    for started_at in sorted(episodes):
        row = existing.get(started_at)
        if row is None:
            await _insert(cur, target, episodes[started_at], counts, writes)
        elif row[5] not in ("operator", "rule_removed"):
            await _update(cur, row, episodes[started_at], counts, writes)


async def _update(
    cur: psycopg.AsyncCursor[Any], row: tuple[Any, ...], episode: Episode, counts: dict[str, int], writes: Writes
) -> None:
    """Bring an alert written before in line with its episode as evaluated now."""
    alert_id, state, cleared_at = row[0], row[2], row[4]
    if episode.cleared_at is not None:
        if state != "cleared" or cleared_at != episode.cleared_at:
            if state == "retracted":
                await cur.execute(_REOPEN, (episode.raised_at, episode.value, alert_id))
            await cur.execute(_CLEAR, (episode.cleared_at, alert_id))
            _event(writes, alert_id, "cleared", counts)
    elif state not in ("active", "acknowledged"):
        await cur.execute(_REOPEN, (episode.raised_at, episode.value, alert_id))
        _event(writes, alert_id, "raised" if state == "retracted" else "reopened", counts)


async def _insert(
    cur: psycopg.AsyncCursor[Any], target: AlertTarget, episode: Episode, counts: dict[str, int], writes: Writes
) -> None:
    cleared = episode.cleared_at is not None
    await cur.execute(
        _INSERT_ALERT,
        (
            target.rule_id,
            target.device_id,
            episode.started_at,
            episode.raised_at,
            target.severity,
            "cleared" if cleared else "active",
            episode.value,
            episode.message,
            episode.cleared_at,
            "condition" if cleared else None,
        ),
    )
    row = await cur.fetchone()
    if row is None:
        return
    _event(writes, row[0], "raised", counts)
    if cleared:
        _event(writes, row[0], "cleared", counts)


def _event(writes: Writes, alert_id: int, kind: str, counts: dict[str, int]) -> None:
    writes.add(_EVENT, (alert_id, kind))
    counts[kind] = counts.get(kind, 0) + 1
