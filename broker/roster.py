"""Who is on the broker: the devices and integrators `fleet devices list` and `fleet integrators list` show.

Read-only queries over the registry (`devices`) and the accounts table (`mqtt_accounts`); secrets and
their hashes are never read.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

import psycopg

Connection = psycopg.Connection[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class DeviceEntry:
    """A registered device and the state of its broker account."""

    id: str
    group: str | None
    enabled: bool  # not disabled in the registry
    account: str  # "active", "revoked" or "none" (registered by the bridge or API without an account)
    created_at: datetime
    last_seen: datetime | None
    presence: str | None  # "online", "offline", or None before the first word from it


@dataclass(frozen=True, slots=True)
class IntegratorEntry:
    """A read-only broker account for a third party."""

    name: str
    group: str | None  # None: every device
    active: bool
    created_at: datetime
    revoked_at: datetime | None


@dataclass(frozen=True, slots=True)
class DeviceCounts:
    """How many devices are registered, and how many are online now."""

    devices: int
    online: int


def list_devices(conn: Connection) -> list[DeviceEntry]:
    """Every registered device, by id."""
    rows = conn.execute(
        "SELECT d.id, d.group_name, NOT d.disabled,"
        " CASE WHEN a.username IS NULL THEN 'none' WHEN a.revoked_at IS NULL THEN 'active' ELSE 'revoked' END,"
        " d.created_at, d.last_seen, d.presence"
        " FROM devices d LEFT JOIN mqtt_accounts a ON a.device_id = d.id ORDER BY d.id"
    ).fetchall()
    return [DeviceEntry(*row) for row in rows]


def list_integrators(conn: Connection) -> list[IntegratorEntry]:
    """Every integrator account, revoked ones included, by name."""
    rows = conn.execute(
        "SELECT username, device_group, revoked_at IS NULL, created_at, revoked_at"
        " FROM mqtt_accounts WHERE role = 'integrator' ORDER BY username"
    ).fetchall()
    return [IntegratorEntry(*row) for row in rows]


def count_devices(conn: Connection) -> DeviceCounts:
    """Registered and online devices (presence as the bridge last recorded it)."""
    row = conn.execute("SELECT count(*), count(*) FILTER (WHERE presence = 'online') FROM devices").fetchone()
    assert row is not None  # an aggregate always returns a row
    return DeviceCounts(devices=row[0], online=row[1])
