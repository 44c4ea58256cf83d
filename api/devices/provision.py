"""Device accounts on the broker: provisioning, new secrets, and putting every change into effect.

The accounts are `broker/accounts.py`'s (table `mqtt_accounts`, secrets stored only as the broker's own
hash) and the broker's files are `broker/reload.py`'s: the `fleet devices …` commands use the same
functions, so the password and ACL files stay one pure function of the database whoever changes it.
Those functions take a synchronous psycopg connection, so each change runs in a worker thread on a
connection of its own: provisioning is rare (nothing like ingest), and one code path beats a second,
asynchronous copy of the account rules.

After a change the broker must see, `BrokerFiles.apply` renders both files, writes them to
`api.broker_accounts_dir` and signals every local Mosquitto that reads them (SIGHUP: no restart; the broker
then also ends the connection of an account that no longer passes). Without that setting the API writes
no files and says so (`pending`): the change reaches the broker at `fleet broker reload`, run where the
broker's files live. A failed reload is reported in the answer (`failed`) and logged, not raised: the
database change is committed, and an error status would make a client retry a change that was made.

Renders are serialised in one API process, so a render that began before another change committed never
overwrites the files of a later one. Several API instances writing one folder can still race that way;
the next change or `fleet broker reload` repairs it.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg
from litestar.di import Provide
from psycopg import errors
from psycopg.types.json import Jsonb

from api.devices.schemas import BrokerUpdate, DeviceCreate
from broker import accounts, reload
from broker.accounts import AccountError, Credential, DeviceSpec
from broker.acl import AclError, Role
from broker.passwords import PasswordFormatError
from config import Settings

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 5
ACCOUNTS_DIR_VARIABLE: Final = "FLEETBRIDGE_API_BROKER_ACCOUNTS_DIR"

Connection = psycopg.Connection[tuple[Any, ...]]


@dataclass(frozen=True, slots=True)
class Conflict:
    """A change the existing data refuses (the id is taken, the account was revoked), and why."""

    reason: str


def _connect(database_url: str) -> Connection:
    return psycopg.connect(database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S)


def _provision(database_url: str, device: DeviceCreate) -> Credential | Conflict:
    with _connect(database_url) as conn:
        try:
            # One transaction: a name held by a service or integrator account undoes the registry row too.
            with conn.transaction():
                conn.execute(
                    "INSERT INTO devices (id, kind, name, group_name, metadata) VALUES (%s, %s, %s, %s, %s)",
                    (device.id, device.kind, device.name, device.group, Jsonb(device.metadata)),
                )
                return accounts.add_device(conn, DeviceSpec(device.id))
        except errors.UniqueViolation:
            return Conflict(f"device {device.id!r} exists; change it with PATCH, or give it a new secret")
        except AccountError as exc:
            return Conflict(str(exc))


def _new_secret(database_url: str, device_id: str, reinstate: bool) -> Credential | Conflict | None:
    with _connect(database_url) as conn, conn.transaction():
        # The registry row is locked, so the device cannot be deleted (and re-registered by the
        # account's insert) halfway through.
        if conn.execute("SELECT 1 FROM devices WHERE id = %s FOR UPDATE", (device_id,)).fetchone() is None:
            return None
        row = conn.execute(
            "SELECT role, revoked_at IS NOT NULL FROM mqtt_accounts WHERE username = %s", (device_id,)
        ).fetchone()
        try:
            if row is None:
                # Registered by the bridge from an anonymous broker: this is its first account.
                return accounts.add_device(conn, DeviceSpec(device_id))
            if row[0] != Role.DEVICE:
                return Conflict(f"the name {device_id!r} belongs to a {row[0]} account, not a device")
            if row[1] and not reinstate:
                return Conflict(f"device {device_id!r} was revoked; pass reinstate=true to give it a secret again")
            return accounts.rotate(conn, device_id, roles={Role.DEVICE}, reinstate=reinstate)
        except AccountError as exc:
            return Conflict(str(exc))


class DeviceAccounts:
    """Device accounts in the database the API uses, each change on a connection of its own."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url

    async def provision(self, device: DeviceCreate) -> Credential | Conflict:
        """Register the device and give it an account, in one transaction; its secret is returned only here.

        A `Conflict` when the id is registered already, or names a service or integrator account.
        """
        return await asyncio.to_thread(_provision, self._database_url, device)

    async def new_secret(self, device_id: str, *, reinstate: bool = False) -> Credential | Conflict | None:
        """A new secret for the device (its first, for a device the bridge registered); None: no such device.

        A revoked device gets one only with `reinstate`.
        """
        return await asyncio.to_thread(_new_secret, self._database_url, device_id, reinstate)


class BrokerFiles:
    """Puts the accounts into effect: writes the broker's files in `directory` and reloads the broker.

    Without a directory nothing is written, and every change is reported as `pending`.
    """

    def __init__(self, database_url: str, directory: Path | None) -> None:
        self._database_url = database_url
        self._directory = directory
        self._lock = asyncio.Lock()

    @property
    def directory(self) -> Path | None:
        """Where the broker reads its password and ACL files; None when this API does not write them."""
        return self._directory

    async def apply(self) -> BrokerUpdate:
        """Render the files from the database, write them and signal the broker; never raises on a failed
        reload (the answer says what failed)."""
        directory = self._directory
        if directory is None:
            return BrokerUpdate(
                status="pending",
                detail=f"this API writes no broker files ({ACCOUNTS_DIR_VARIABLE} is not set):"
                " the change takes effect at `fleet broker reload`",
            )
        async with self._lock:
            try:
                report = await asyncio.to_thread(self._apply, directory)
            except (reload.ReloadError, AclError, PasswordFormatError, AccountError, OSError) as exc:
                log.warning("broker files in %s not applied: %s", directory, exc)
                return BrokerUpdate(
                    status="failed", detail=f"stored, but not applied to the broker: {exc}; run `fleet broker reload`"
                )
        if not report.pids:
            return BrokerUpdate(
                status="written", detail=f"files written to {directory}; no running mosquitto reads them"
            )
        return BrokerUpdate(status="reloaded", detail="the broker reloaded its accounts", pids=list(report.pids))

    def _apply(self, directory: Path) -> reload.ReloadReport:
        with _connect(self._database_url) as conn:
            return reload.apply(conn, directory)


UNCHANGED: Final = BrokerUpdate(status="unchanged", detail="nothing the broker reads changed")


def provision_dependencies(settings: Settings) -> dict[str, Provide]:
    """`device_accounts` and `broker_files` for the handlers, one of each per app."""
    device_accounts = DeviceAccounts(settings.database.url)
    broker_files = BrokerFiles(settings.database.url, settings.api.broker_accounts_dir)

    def provide_device_accounts() -> DeviceAccounts:
        return device_accounts

    def provide_broker_files() -> BrokerFiles:
        return broker_files

    return {
        "device_accounts": Provide(provide_device_accounts, sync_to_thread=False),
        "broker_files": Provide(provide_broker_files, sync_to_thread=False),
    }
