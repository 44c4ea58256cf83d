"""Reading one device in detail, changing it and deleting it, in the registry (PostgreSQL).

Statements are built from constant fragments, one per column a patch may set; values are parameters.
What the broker must learn of a change (disabled, another group) is reported back to the caller, which
puts it into effect (`api/devices/provision.py`).

Deleting a device deletes its registry row and, with it, its broker account (`mqtt_accounts` references
`devices` with ON DELETE CASCADE). Its telemetry history stays: history is not keyed to the registry,
and it leaves with the partitions that retention drops, so a record of what a removed vehicle reported
survives its removal. Its cached state in Redis (state hash, GEO position, last-seen entry) is removed
first, so a failing Redis leaves the device whole rather than half deleted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from psycopg import AsyncCursor
from psycopg.rows import dict_row
from psycopg.types.json import Jsonb
from redis.asyncio import Redis

from api.devices.schemas import DeviceDetails, DevicePatch, MqttAccount
from api.devices.services import device_from_row
from api.pool import Pool
from broker.accounts import GATEWAY_KIND
from models.state import GEO_KEY, SEEN_KEY, PresenceState, state_key

_DETAIL_COLUMNS: Final = (
    "d.id, d.kind, d.name, d.group_name, d.metadata, d.created_at, d.last_seen, d.disabled, d.gateway_id, d.site,"
    " d.presence, d.presence_source, d.presence_since,"
    " a.created_at AS account_created_at, a.secret_rotated_at, a.revoked_at"
)
_DETAILS: Final = (
    f"SELECT {_DETAIL_COLUMNS} FROM devices d LEFT JOIN mqtt_accounts a ON a.device_id = d.id WHERE d.id = %(id)s"
)
# Column set by each patch field; `metadata` goes as Jsonb.
_PATCH_COLUMNS: Final = {
    "name": "name",
    "kind": "kind",
    "group": "group_name",
    "metadata": "metadata",
    "disabled": "disabled",
    "gateway": "gateway_id",
    "site": "site",
}


@dataclass(frozen=True, slots=True)
class Patched:
    """A device after a patch, and whether anything the broker reads changed."""

    device: DeviceDetails
    broker_changed: bool


def details_of(row: Mapping[str, Any]) -> DeviceDetails:
    """A `DeviceDetails` from a row of `_DETAIL_COLUMNS`."""
    presence = None
    if row["presence"] is not None and row["presence_source"] is not None and row["presence_since"] is not None:
        presence = PresenceState(row["presence"], row["presence_source"], row["presence_since"])
    account = None
    if row["account_created_at"] is not None:
        account = MqttAccount(
            created_at=row["account_created_at"],
            secret_rotated_at=row["secret_rotated_at"],
            revoked_at=row["revoked_at"],
        )
    return DeviceDetails(**msgspec.structs.asdict(device_from_row(row)), presence=presence, account=account)


async def read_device(pool: Pool, device_id: str) -> DeviceDetails | None:
    """The device with its presence and account, or None when the registry has no such device."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        await cur.execute(_DETAILS, {"id": device_id})
        row = await cur.fetchone()
    return details_of(row) if row is not None else None


class GatewayError(ValueError):
    """A gateway assignment the registry refuses; the message says why."""


async def check_gateway(cur: AsyncCursor[dict[str, Any]], device_id: str, gateway_id: str) -> None:
    """`GatewayError` unless `gateway_id` is another registered device of kind `gateway` (locked, so it
    cannot change kind or be deleted before the caller's transaction ends)."""
    if gateway_id == device_id:
        raise GatewayError(f"device {device_id!r} cannot be its own gateway")
    await cur.execute("SELECT kind FROM devices WHERE id = %(gateway)s FOR SHARE", {"gateway": gateway_id})
    row = await cur.fetchone()
    if row is None:
        raise GatewayError(f"gateway {gateway_id!r} is not a registered device")
    kind = row["kind"]
    if kind != GATEWAY_KIND:
        raise GatewayError(f"device {gateway_id!r} is of kind {kind!r}, not {GATEWAY_KIND!r}: it cannot be a gateway")


async def refused_gateway(pool: Pool, device_id: str, gateway_id: str) -> str | None:
    """Why `gateway_id` cannot publish for `device_id`, or None when it can (a device of kind `gateway`)."""
    async with pool.connection() as conn, conn.cursor(row_factory=dict_row) as cur:
        try:
            await check_gateway(cur, device_id, gateway_id)
        except GatewayError as exc:
            return str(exc)
    return None


async def patch_device(pool: Pool, device_id: str, patch: DevicePatch) -> Patched | None:
    """Apply `patch` in one transaction; None when there is no such device, `GatewayError` for a gateway
    that is not one, or for a gateway with children that would stop being of kind `gateway`."""
    given = {name: value for name in _PATCH_COLUMNS if (value := getattr(patch, name)) is not msgspec.UNSET}
    params: dict[str, Any] = {"id": device_id}
    for name, value in given.items():
        params[name] = Jsonb(value) if name == "metadata" else value
    assignments = ", ".join(f"{_PATCH_COLUMNS[name]} = %({name})s" for name in given)
    async with pool.connection() as conn, conn.transaction(), conn.cursor(row_factory=dict_row) as cur:
        # Lock the row and keep what the broker's files show of it before the change (the password file
        # leaves disabled devices out; a group-limited integrator's ACL lists its group's devices): a
        # patch that changes neither needs no reload.
        await cur.execute(
            "SELECT group_name, disabled, gateway_id, kind FROM devices WHERE id = %(id)s FOR UPDATE", params
        )
        before = await cur.fetchone()
        if before is None:
            return None
        if isinstance(patch.gateway, str):
            await check_gateway(cur, device_id, patch.gateway)
        if isinstance(patch.kind, str) and patch.kind != GATEWAY_KIND and before["kind"] == GATEWAY_KIND:
            await cur.execute("SELECT count(*) AS n FROM devices WHERE gateway_id = %(id)s", params)
            children = await cur.fetchone()
            if children is not None and children["n"]:
                raise GatewayError(
                    f"gateway {device_id!r} publishes for {children['n']} devices: move them to another gateway first"
                )
        if assignments:
            await cur.execute(f"UPDATE devices SET {assignments} WHERE id = %(id)s", params)
        await cur.execute(_DETAILS, params)
        row = await cur.fetchone()
    assert row is not None  # locked above, in this transaction
    gateway_kind = row["kind"] != before["kind"] and GATEWAY_KIND in (row["kind"], before["kind"])
    changed = gateway_kind or any(row[column] != before[column] for column in ("group_name", "disabled", "gateway_id"))
    return Patched(details_of(row), broker_changed=changed)


async def delete_device(pool: Pool, redis: Redis, device_id: str) -> bool:
    """Forget the device's cached state, then delete it and its broker account; False when it is unknown.

    Telemetry history is kept (see the module docstring).
    """
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.execute("SELECT 1 FROM devices WHERE id = %s", (device_id,))
        if await cur.fetchone() is None:
            return False
    async with redis.pipeline(transaction=True) as pipe:
        pipe.delete(state_key(device_id))
        pipe.zrem(GEO_KEY, device_id)
        pipe.zrem(SEEN_KEY, device_id)
        await pipe.execute()
    async with pool.connection() as conn, conn.cursor() as cur:
        await cur.execute("DELETE FROM devices WHERE id = %s", (device_id,))
        return cur.rowcount > 0
