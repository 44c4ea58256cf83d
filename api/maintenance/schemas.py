"""Request and response payloads of maintenance schedules and the maintenance log (docs/maintenance.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Literal

import msgspec
from msgspec import Meta

from models.rules import Severity

Basis = Literal["odometer", "calendar"]


class SchedulePost(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A service every `every` km on the odometer or every `every` days, for one device, a kind or a group
    (none of them: every device); its alert is raised with `severity` when the service falls due."""

    name: Annotated[str, Meta(min_length=1, max_length=200)]
    basis: Basis
    every: Annotated[float, Meta(gt=0, le=10_000_000)]
    device: Annotated[str, Meta(max_length=64)] | None = None
    kind: Annotated[str, Meta(max_length=64)] | None = None
    group: Annotated[str, Meta(max_length=128)] | None = None
    severity: Severity = "major"


class Schedule(msgspec.Struct, frozen=True, kw_only=True):
    """A maintenance schedule; `rule_id` is the alert rule its due services are raised under."""

    id: int
    rule_id: int
    name: str
    basis: str
    every: float
    device: str | None
    kind: str | None
    group: str | None
    severity: str
    created_at: datetime
    created_by: str


class LogPost(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A service done: it clears the schedule's due alert and restarts the schedule from now (or `done_at`).
    `odometer` (km) defaults to the device's latest reading."""

    schedule_id: Annotated[int, Meta(ge=1)]
    notes: Annotated[str, Meta(max_length=2000)] | None = None
    odometer: Annotated[float, Meta(ge=0)] | None = None
    done_at: datetime | None = None


class LogEntry(msgspec.Struct, frozen=True, kw_only=True):
    """One service done: who, when, what, at which odometer reading."""

    id: int
    schedule_id: int
    schedule_name: str
    device_id: str
    done_at: datetime
    done_by: str
    notes: str | None
    odometer: float | None


class ScheduleStatus(msgspec.Struct, frozen=True, kw_only=True):
    """Where a device stands on one schedule: the interval started `since`; `used` of `every` (km or days)
    is used; `due` when all of it is."""

    schedule_id: int
    name: str
    basis: str
    every: float
    since: datetime
    used: float | None
    due: bool


class DeviceMaintenance(msgspec.Struct, frozen=True, kw_only=True):
    """A device's schedules and its maintenance log, newest first."""

    device_id: str
    schedules: list[ScheduleStatus]
    log: list[LogEntry]
