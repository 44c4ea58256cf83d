"""The rules the engine evaluates, as read from `alert_rules`, and which devices each applies to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from models.rules import FENCE_OPS, OFFLINE, Condition

_ACTIVE_RULES = (
    "SELECT r.id, r.name, r.metric, r.op, r.threshold, r.low, r.high, r.for_s, r.clear_threshold, r.clear_for_s,"
    " r.severity, r.device_id, r.kind, r.group_name, r.created_at, r.fence_id, f.name, r.window_s, r.while_parked"
    " FROM alert_rules r LEFT JOIN geofences f ON f.id = r.fence_id"
    # Maintenance rules are raised and cleared by their own sweep (engine/maintenance.py), not by samples.
    " WHERE r.deleted_at IS NULL AND r.op <> 'maintenance' ORDER BY r.id"
)


@dataclass(frozen=True, slots=True)
class Device:
    """What rule scopes look at: the device's kind and group."""

    id: str
    kind: str
    group: str | None


@dataclass(frozen=True, slots=True)
class Rule:
    """One active rule. It evaluates samples from its creation on (device time): history before it is not
    searched for alerts nobody asked for then."""

    id: int
    name: str
    metric: str | None  # None for a presence rule (op `offline`) and a geofence rule
    severity: str
    condition: Condition
    device_id: str | None
    kind: str | None
    group: str | None
    created_at: datetime
    fence_id: str | None = None  # a geofence rule's fence, as `engine.geofence` names fences
    fence_name: str = ""

    @property
    def on_samples(self) -> bool:
        """True for a threshold rule (evaluated on samples' metrics)."""
        return self.condition.op not in (OFFLINE, *FENCE_OPS)

    @property
    def on_presence(self) -> bool:
        """True for a presence rule (op `offline`)."""
        return self.condition.op == OFFLINE

    @property
    def on_fences(self) -> bool:
        """True for a geofence rule (evaluated on the enter and exit events of its fence)."""
        return self.condition.op in FENCE_OPS

    def applies_to(self, device: Device) -> bool:
        """True when the rule's scope (device, kind, group, or the whole fleet) includes `device`."""
        if self.device_id is not None:
            return device.id == self.device_id
        if self.kind is not None:
            return device.kind == self.kind
        if self.group is not None:
            return device.group == self.group
        return True


async def load_rules(cur: psycopg.AsyncCursor[Any]) -> list[Rule]:
    """The active rules, read each cycle: a rule added or removed takes effect without a restart."""
    await cur.execute(_ACTIVE_RULES)
    return [
        Rule(
            id=row[0],
            name=row[1],
            metric=row[2],
            severity=row[10],
            condition=Condition(
                op=row[3],
                threshold=row[4],
                low=row[5],
                high=row[6],
                for_s=row[7],
                clear_threshold=row[8],
                clear_for_s=row[9],
                window_s=row[17],
                while_parked=row[18],
            ),
            device_id=row[11],
            kind=row[12],
            group=row[13],
            created_at=row[14],
            fence_id=None if row[15] is None else str(row[15]),
            fence_name=row[16] or "",
        )
        for row in await cur.fetchall()
    ]
