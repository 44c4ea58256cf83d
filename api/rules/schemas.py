"""Response payloads of the rules domain (requests are `models.rules.RuleSpec`)."""

from __future__ import annotations

from datetime import datetime

import msgspec

from models.rules import NotifyTarget


class Rule(msgspec.Struct, frozen=True, kw_only=True):
    """A stored alert rule (docs/rules.md); scope fields null for a rule on the whole fleet."""

    id: int
    name: str
    metric: str | None  # none for a presence rule (op `offline`) and a geofence rule
    op: str
    threshold: float | None
    low: float | None
    high: float | None
    for_s: int
    clear_threshold: float | None
    clear_for_s: int
    severity: str
    device_id: str | None
    kind: str | None
    group: str | None
    fence_id: int | None  # the fence of a geofence rule (ops entered, inside, left)
    created_at: datetime
    created_by: str | None
    notify: list[NotifyTarget]  # the notification channels told of its alerts' changes
    window_s: int | None = None  # op `drop`: the window the fall is measured over
    while_parked: bool = False  # op `drop`: only samples of a parked device count


class RulePage(msgspec.Struct, frozen=True, kw_only=True):
    """Every active rule, by id."""

    items: list[Rule]
