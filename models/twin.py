"""The device twin's vocabulary: the desired configuration a device is sent and what it reports applying.

A desired document is a JSON object. A few keys are known and typed (`KnownSettings`: the report interval,
on-device thresholds, the firmware channel); any other key is carried as it is, for firmware that knows it.
Changes arrive as RFC 7396 JSON Merge Patches (`merge_patch`), and the document a device receives is its
group's defaults with its own keys merged over them (`effective`).

On the wire (docs/twin.md): `DesiredConfig` retained on `fleet/v1/{id}/config`, the latest only;
`ReportedConfig` retained on `fleet/v1/{id}/config/reported` by the device, with the version it applied.
Versions come from one sequence for every twin, so they only ever grow for a device, even across a
delete and re-creation of its id: a device may apply a document only when its version is higher than
the one it applied last.
"""

from __future__ import annotations

import math
from typing import Annotated, Any, Final

import msgspec
from msgspec import Meta

REPORT_INTERVAL_MIN_S: Final = 1
REPORT_INTERVAL_MAX_S: Final = 86_400
FIRMWARE_CHANNEL_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$"
THRESHOLD_NAME_PATTERN: Final = r"^[a-z][a-z0-9_]{0,31}$"
THRESHOLDS_MAX: Final = 64
# The whole document as JSON: small enough to sit retained on the broker for every device.
DESIRED_MAX_BYTES: Final = 16 * 1024

JsonObject = dict[str, Any]


class KnownSettings(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=False):
    """The typed keys of a desired document; every one optional, any other key passes untyped."""

    report_interval_s: Annotated[int, Meta(ge=REPORT_INTERVAL_MIN_S, le=REPORT_INTERVAL_MAX_S)] | None = None
    """Seconds between telemetry reports."""
    thresholds: (
        Annotated[
            dict[Annotated[str, Meta(pattern=THRESHOLD_NAME_PATTERN)], float],
            Meta(max_length=THRESHOLDS_MAX),
        ]
        | None
    ) = None
    """On-device thresholds: metric name -> value (a device applies those of metrics it knows)."""
    firmware_channel: Annotated[str, Meta(pattern=FIRMWARE_CHANNEL_PATTERN)] | None = None
    """The firmware release channel the device follows (`stable`, `beta`, ...)."""


class DesiredConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Retained on `config`: the effective desired document and its version."""

    version: Annotated[int, Meta(ge=1)]
    """Grows with every change of the document (its own keys, its group's defaults, or its group)."""
    desired: JsonObject
    """The group's defaults with the device's own keys merged over them (see `KnownSettings`)."""


class ReportedConfig(msgspec.Struct, frozen=True, kw_only=True):
    """Retained on `config/reported` by the device: what it applied, and from which version."""

    version: Annotated[int, Meta(ge=0)]
    """The `DesiredConfig.version` the device applied."""
    applied: JsonObject
    """The keys the device applied, with the values it uses (thresholds of metrics it knows only)."""


DESIRED_DECODER: Final = msgspec.json.Decoder(DesiredConfig)
REPORTED_DECODER: Final = msgspec.json.Decoder(ReportedConfig)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7396 §2: apply the JSON Merge Patch `patch` to `target` (neither is changed; a new value returns).

    A patch that is not an object replaces the target; in an object, null removes a key and an object
    merges into the key's object (or into an empty one).
    """
    if not isinstance(patch, dict):
        return patch
    result = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


def effective(defaults: JsonObject, own: JsonObject) -> JsonObject:
    """The document a device receives: its group's `defaults` with its `own` keys merged over them.

    Stored documents hold no nulls (a merge patch removes them), so merging is the merge patch itself.
    """
    merged: JsonObject = merge_patch(defaults, own)
    return merged


def desired_problem(document: object) -> str | None:
    """Why `document` cannot be a desired document (the reason, for a 400), or None when it can."""
    if not isinstance(document, dict):
        return "the document must be a JSON object"
    size = len(msgspec.json.encode(document))
    if size > DESIRED_MAX_BYTES:
        return f"the document is {size} bytes as JSON; at most {DESIRED_MAX_BYTES}"
    try:
        known = msgspec.convert(document, KnownSettings)
    except msgspec.ValidationError as exc:
        return str(exc)
    if known.thresholds is not None:
        for name, value in known.thresholds.items():
            if not math.isfinite(value):
                return f"threshold {name!r} must be a finite number"
    if not _finite(document):
        return "numbers must be finite (JSON has no infinity or NaN)"
    return None


def _finite(value: object) -> bool:
    # A JSON number too large for a double decodes as infinity: neither PostgreSQL's jsonb nor a device takes it.
    if isinstance(value, float):
        return math.isfinite(value)
    if isinstance(value, dict):
        return all(_finite(item) for item in value.values())
    if isinstance(value, list):
        return all(_finite(item) for item in value)
    return True


def difference(desired: JsonObject, reported: JsonObject | None) -> list[str]:
    """The top-level keys whose desired value the device has not reported applying (sorted)."""
    applied = reported or {}
    return sorted(key for key, value in desired.items() if key not in applied or applied[key] != value)
