"""The rules the engine evaluates, as read from `alert_rules`, and which devices each applies to."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

from models.rules import OFFLINE, Condition

_ACTIVE_RULES = (
    "SELECT id, name, metric, op, threshold, low, high, for_s, clear_threshold, clear_for_s, severity,"
    " device_id, kind, group_name, created_at, window_s, while_parked FROM alert_rules WHERE deleted_at IS NULL"
    " ORDER BY id"
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
    metric: str | None  # None for a presence rule (op `offline`)
    severity: str
    condition: Condition
    device_id: str | None
    kind: str | None
    group: str | None
    created_at: datetime

    @property
    def on_samples(self) -> bool:
        """True for a threshold rule (evaluated on samples); False for a presence rule."""
        return self.condition.op != OFFLINE

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
                window_s=row[15],
                while_parked=row[16],
            ),
            device_id=row[11],
            kind=row[12],
            group=row[13],
            created_at=row[14],
        )
        for row in await cur.fetchall()
    ]
