"""Twins in PostgreSQL: reading them, patching a device's or a group's document under its version.

Every change runs in one transaction that locks the twin's row, checks the caller's version (If-Match),
applies the merge patch, validates the result and takes a new version from the `twin_versions` sequence
(migration 0024; its triggers re-version a group's devices when the group's defaults change).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from psycopg.rows import dict_row
from psycopg.types.json import Jsonb

from api.pool import Pool
from api.twin.schemas import DeviceTwin, GroupTwin
from models.twin import desired_problem, difference, effective, merge_patch


@dataclass(frozen=True, slots=True)
class Unknown:
    """No such device."""


@dataclass(frozen=True, slots=True)
class Disabled:
    """The device is disabled: its configuration is not changed."""


@dataclass(frozen=True, slots=True)
class Stale:
    """The caller's If-Match names another version than the current one."""

    current: int


@dataclass(frozen=True, slots=True)
class Invalid:
    """The patched document is not a valid desired document."""

    reason: str


PatchRefusal = Unknown | Disabled | Stale | Invalid

_DEVICE_TWIN = (
    "SELECT d.id, d.group_name, d.disabled, t.desired, t.version, t.updated_at, t.updated_by,"
    " t.published_version, t.published_at, t.reported, t.reported_version, t.reported_at,"
    " g.desired AS group_desired, g.version AS group_version"
    " FROM devices d LEFT JOIN device_twins t ON t.device_id = d.id"
    " LEFT JOIN group_twins g ON g.group_name = d.group_name WHERE d.id = %s"
)


def _device_twin(row: Mapping[str, Any]) -> DeviceTwin:
    own = row["desired"] or {}
    defaults = row["group_desired"] or {}
    desired = effective(defaults, own)
    version = row["version"] or 0
    reported_version = row["reported_version"]
    return DeviceTwin(
        device_id=row["id"],
        version=version,
        desired=desired,
        own=own,
        group=row["group_name"],
        group_defaults=defaults,
        group_version=row["group_version"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
        published_version=row["published_version"] or 0,
        published_at=row["published_at"],
        reported=row["reported"],
        reported_version=reported_version,
        reported_at=row["reported_at"],
        difference=difference(desired, row["reported"]),
        in_sync=reported_version is not None and reported_version >= version,
    )


async def read_device_twin(pool: Pool, device_id: str) -> DeviceTwin | None:
    """The device's twin (an empty one when nothing was ever desired); None for an unknown device."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_DEVICE_TWIN, (device_id,))
        row = await cur.fetchone()
    return None if row is None else _device_twin(row)


def matches(if_match: str, version: int) -> bool:
    """Whether an If-Match header value (`*`, or a list of strong entity tags) admits `version`."""
    tags = [tag.strip() for tag in if_match.split(",")]
    return "*" in tags or f'"{version}"' in tags


async def patch_device_twin(
    pool: Pool, device_id: str, patch: dict[str, Any], *, if_match: str, by: str
) -> DeviceTwin | PatchRefusal:
    """Apply `patch` to the device's own keys if `if_match` admits the current version; the new twin."""
    async with pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        await cur.execute("SELECT disabled FROM devices WHERE id = %s FOR SHARE", (device_id,))
        device = await cur.fetchone()
        if device is None:
            return Unknown()
        if device["disabled"]:
            return Disabled()
        await cur.execute(
            "INSERT INTO device_twins (device_id) VALUES (%s) ON CONFLICT (device_id) DO NOTHING", (device_id,)
        )
        await cur.execute("SELECT desired, version FROM device_twins WHERE device_id = %s FOR UPDATE", (device_id,))
        twin = await cur.fetchone()
        if twin is None:
            return Unknown()
        if not matches(if_match, twin["version"]):
            return Stale(twin["version"])
        await cur.execute(
            "SELECT g.desired FROM devices d JOIN group_twins g ON g.group_name = d.group_name WHERE d.id = %s",
            (device_id,),
        )
        group = await cur.fetchone()
        own = merge_patch(twin["desired"], patch)
        reason = desired_problem(own) or desired_problem(effective(group["desired"] if group else {}, own))
        if reason is not None:
            return Invalid(reason)
        await cur.execute(
            "UPDATE device_twins SET desired = %s, version = nextval('twin_versions'), updated_at = now(),"
            " updated_by = %s WHERE device_id = %s",
            (Jsonb(own), by, device_id),
        )
        await cur.execute(_DEVICE_TWIN, (device_id,))
        changed = await cur.fetchone()
    return Unknown() if changed is None else _device_twin(changed)


def _group_twin(name: str, row: Mapping[str, Any] | None) -> GroupTwin:
    if row is None:
        return GroupTwin(group=name, version=0, desired={}, updated_at=None, updated_by=None)
    return GroupTwin(
        group=name,
        version=row["version"],
        desired=row["desired"],
        updated_at=row["updated_at"],
        updated_by=row["updated_by"],
    )


_GROUP_TWIN = "SELECT desired, version, updated_at, updated_by FROM group_twins WHERE group_name = %s"


async def read_group_twin(pool: Pool, name: str) -> GroupTwin:
    """The group's defaults (empty, version 0, when none were set)."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_GROUP_TWIN, (name,))
        return _group_twin(name, await cur.fetchone())


async def patch_group_twin(
    pool: Pool, name: str, patch: dict[str, Any], *, if_match: str, by: str
) -> GroupTwin | Stale | Invalid:
    """Apply `patch` to the group's defaults if `if_match` admits their version; every member is re-versioned."""
    async with pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        # Taking the version on the first patch keeps two first patches from both passing If-Match "0".
        await cur.execute(
            "INSERT INTO group_twins (group_name, version) VALUES (%s, 0) ON CONFLICT (group_name) DO NOTHING", (name,)
        )
        await cur.execute(_GROUP_TWIN + " FOR UPDATE", (name,))
        row = await cur.fetchone()
        current = _group_twin(name, row)
        if not matches(if_match, current.version):
            return Stale(current.version)
        defaults = merge_patch(current.desired, patch)
        reason = desired_problem(defaults)
        if reason is not None:
            return Invalid(reason)
        await cur.execute(
            "UPDATE group_twins SET desired = %s, version = nextval('twin_versions'), updated_at = now(),"
            " updated_by = %s WHERE group_name = %s RETURNING desired, version, updated_at, updated_by",
            (Jsonb(defaults), by, name),
        )
        return _group_twin(name, await cur.fetchone())
