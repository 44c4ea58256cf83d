"""Device accounts on the broker: provisioning, new secrets, and telling whether a change is in effect.

The accounts are `broker/accounts.py`'s (table `mqtt_accounts`, secrets stored only as the broker's own
hash): the `fleet devices …` commands use the same functions. Those functions take a synchronous psycopg
connection, so each change runs in a worker thread on a connection of its own: provisioning is rare
(nothing like ingest), and one code path beats a second, asynchronous copy of the account rules.

The API writes no broker files and signals no process: it may run on any host, as many instances as
wanted. Each change commits with a NOTIFY that every broker's agent (broker/agent.py) acts on; the
answer then waits briefly (`broker.delivery.APPLY_WAIT_S`) for the live agents' acknowledgements and
says which applied it (`applied`) or that it is not in effect yet (`pending`, with what to do). A change
whose acknowledgement is missing is still committed: an error status would make a client retry a change
that was made.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Any, Final

import psycopg
from litestar.di import Provide
from psycopg import errors
from psycopg.types.json import Jsonb

from api.devices.schemas import BrokerUpdate, DeviceCreate
from broker import accounts, delivery
from broker.accounts import AccountError, Credential, DeviceSpec
from broker.acl import Role
from config import Settings

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S: Final = 5

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
                    "INSERT INTO devices (id, kind, name, group_name, metadata, gateway_id, site)"
                    " VALUES (%s, %s, %s, %s, %s, %s, %s)",
                    (
                        device.id,
                        device.kind,
                        device.name,
                        device.group,
                        Jsonb(device.metadata),
                        device.gateway,
                        device.site,
                    ),
                )
                return accounts.add_device(conn, DeviceSpec(device.id))
        except errors.UniqueViolation:
            return Conflict(f"device {device.id!r} exists; change it with PATCH, or give it a new secret")
        except errors.ForeignKeyViolation:
            return Conflict(f"gateway {device.gateway!r} was deleted meanwhile")
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


class BrokerDelivery:
    """Tells whether the latest account change is in effect on the brokers (their agents' acknowledgements)."""

    def __init__(self, database_url: str) -> None:
        self._database_url = database_url

    async def wait(self) -> BrokerUpdate:
        """Wait briefly for every live broker agent to apply the current accounts revision; never raises."""
        try:
            state = await asyncio.to_thread(self._wait)
        except psycopg.Error as exc:
            log.warning("could not read the broker agents' acknowledgements: %s", exc)
            return BrokerUpdate(status="pending", detail=f"stored; could not check the broker agents: {exc}")
        return BrokerUpdate(
            status="applied" if state.complete else "pending",
            detail=state.describe(),
            revision=state.revision,
            agents=list(state.applied),
            waiting=list(state.waiting),
        )

    def _wait(self) -> delivery.Delivery:
        with _connect(self._database_url) as conn:
            return delivery.wait_applied(conn)


UNCHANGED: Final = BrokerUpdate(status="unchanged", detail="nothing the broker reads changed")


def provision_dependencies(settings: Settings) -> dict[str, Provide]:
    """`device_accounts` and `broker_delivery` for the handlers, one of each per app."""
    device_accounts = DeviceAccounts(settings.database.url)
    broker_delivery = BrokerDelivery(settings.database.url)

    def provide_device_accounts() -> DeviceAccounts:
        return device_accounts

    def provide_broker_delivery() -> BrokerDelivery:
        return broker_delivery

    return {
        "device_accounts": Provide(provide_device_accounts, sync_to_thread=False),
        "broker_delivery": Provide(provide_broker_delivery, sync_to_thread=False),
    }
