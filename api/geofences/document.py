"""A fence as a client sends it: a GeoJSON Feature with a `name` (and optionally a `group`) property,
validated by `models.fences.geojson` (the rules the engine applies when it loads the fence)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

from models.fences.geojson import FenceRejected, parse_fence

MAX_NAME: Final = 200
# Set by the server; a client's values for them are ignored rather than stored.
SERVER_PROPERTIES: Final = frozenset({"name", "group", "created_at", "created_by", "updated_at"})


@dataclass(frozen=True, slots=True)
class FenceDocument:
    """What is stored of a valid fence."""

    name: str
    group: str | None
    geometry: dict[str, Any]
    properties: dict[str, Any]  # the other properties, `radius_m` included


def read_document(document: object) -> FenceDocument | str:
    """The fence to store, or the reason it is refused."""
    if not isinstance(document, Mapping) or document.get("type") != "Feature":
        return "a geofence is a GeoJSON Feature with a `name` property"
    properties = document.get("properties")
    if not isinstance(properties, Mapping):
        return "a geofence needs properties, with at least a `name`"
    name = properties.get("name")
    if not isinstance(name, str) or not 1 <= len(name.strip()) <= MAX_NAME:
        return f"properties.name must be text of 1 to {MAX_NAME} characters"
    group = properties.get("group")
    if group is not None and not isinstance(group, str):
        return "properties.group must be a device group's name, or null for every device"
    fence = parse_fence("new", document)
    if isinstance(fence, FenceRejected):
        return fence.reason
    geometry = document.get("geometry")
    assert isinstance(geometry, Mapping)  # parse_fence accepted it
    others = {key: value for key, value in properties.items() if key not in SERVER_PROPERTIES}
    return FenceDocument(name.strip(), group, dict(geometry), others)
