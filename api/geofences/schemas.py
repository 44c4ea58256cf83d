"""Payloads of the geofences domain: fences as GeoJSON Features, their events, time inside."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

import msgspec


class Geofence(msgspec.Struct, frozen=True, kw_only=True):
    """A stored fence as a GeoJSON Feature. `properties` holds `name`, `group` (null: every device),
    `created_at`, `created_by`, `updated_at`, and whatever other properties it was given (`radius_m`)."""

    type: Literal["Feature"] = "Feature"
    id: int
    geometry: dict[str, Any]
    properties: dict[str, Any]


class GeofenceCollection(msgspec.Struct, frozen=True, kw_only=True):
    """Every fence not removed, by id."""

    type: Literal["FeatureCollection"] = "FeatureCollection"
    features: list[Geofence]


class GeofenceEvent(msgspec.Struct, frozen=True, kw_only=True):
    """A device entered or left a fence at `ts`, the interpolated crossing (device time).

    `crossed` is false for an enter at the device's first point already inside (no crossing seen)."""

    id: int
    device_id: str
    fence_id: int
    fence_name: str
    kind: Literal["enter", "exit"]
    ts: datetime
    crossed: bool


class GeofenceEventPage(msgspec.Struct, frozen=True, kw_only=True):
    """Events oldest first; `next_cursor` continues the listing, null at the end."""

    items: list[GeofenceEvent]
    next_cursor: int | None


class DeviceTimeInside(msgspec.Struct, frozen=True, kw_only=True):
    """One device's time inside the fence during the window, and how many stays touched it."""

    device_id: str
    seconds: float
    visits: int
    inside_at_end: bool  # still inside at `until` (or at its last evaluated point)


class TimeInside(msgspec.Struct, frozen=True, kw_only=True):
    """Per device, time inside the fence during [since, until): devices with no time inside are left out."""

    fence_id: int
    since: datetime
    until: datetime
    devices: list[DeviceTimeInside]
