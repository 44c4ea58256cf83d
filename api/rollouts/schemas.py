"""Request and response payloads of firmware rollouts (docs/ota.md#rollouts)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta

from api.devices.schemas import GroupName


class RolloutPost(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Update every device of `group` whose kind the image is for: `first_wave_pct` of them first, then
    the rest once that wave has finished, unless more than `failure_threshold_pct` of it failed."""

    image_id: Annotated[int, Meta(ge=1)]
    group: GroupName
    first_wave_pct: Annotated[int, Meta(ge=1, le=100)] = 10
    failure_threshold_pct: Annotated[int, Meta(ge=0, le=100)] = 20
    expires_in_s: Annotated[int, Meta(ge=60, le=30 * 86400)] = 86400


class WaveCounts(msgspec.Struct, frozen=True, kw_only=True):
    """Where one wave's devices are: not sent yet (the wave has not started), in progress, done, failed
    (failed or expired), and already running the version (nothing to do)."""

    wave: int
    devices: int
    pending: int
    in_progress: int
    succeeded: int
    failed: int
    already: int


class Rollout(msgspec.Struct, frozen=True, kw_only=True):
    """A rollout and its waves. `state`: running, stopped (by the failure threshold, or by an operator:
    `reason`), completed."""

    id: int
    image_id: int
    version: str
    group: str
    first_wave_pct: int
    failure_threshold_pct: int
    state: str
    wave: int
    reason: str | None
    created_at: datetime
    created_by: str
    finished_at: datetime | None
    waves: list[WaveCounts]
