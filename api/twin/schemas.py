"""Response payloads of the twin domain (requests are JSON Merge Patches, read by the handlers)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import msgspec


class DeviceTwin(msgspec.Struct, frozen=True, kw_only=True):
    """A device's twin: what it should use (`desired`), what it says it uses (`reported`), and where they differ.

    `version` is the effective document's version, also the `ETag`: it changes when the device's own keys,
    its group's defaults or its group change. The broker has `published_version` (retained on `config`);
    the device applied `reported_version`. `difference` lists the desired keys the device has not reported
    applying with the same value.
    """

    device_id: str
    version: int
    desired: dict[str, Any]
    own: dict[str, Any]
    group: str | None
    group_defaults: dict[str, Any]
    group_version: int | None
    updated_at: datetime | None
    updated_by: str | None
    published_version: int
    published_at: datetime | None
    reported: dict[str, Any] | None
    reported_version: int | None
    reported_at: datetime | None
    difference: list[str]
    in_sync: bool


class GroupTwin(msgspec.Struct, frozen=True, kw_only=True):
    """A group's twin defaults; `version` (0: none set yet) is also the `ETag`."""

    group: str
    version: int
    desired: dict[str, Any]
    updated_at: datetime | None
    updated_by: str | None
