"""MQTT accounts in PostgreSQL, the one source of truth for the broker's password and ACL files.

Design (table `mqtt_accounts`, models/migrations/0003_device_credentials.sql): one row per username,
devices and services alike, rather than credential columns on `devices` plus a second table. The ACL's
pattern lines grant every username the device rights on fleet/v1/<username>/..., so a device must never
share a name with a bridge, API or integrator account: one primary key makes that impossible instead of
merely checked. A device account points at its registry row (`devices.id`, the same string); deleting the
device deletes the account, and `devices.disabled` takes a device off the broker without losing its
secret. Roles: `device`, `bridge`, `engine`, `api`, `integrator` (read-only; optionally one device group).

Secrets: `secrets.token_urlsafe`, returned once by the function that makes them, stored only as the
broker's own PBKDF2-SHA512 string (broker/passwords.py): the password file is rendered from that column,
so no second hash could serve. Revoking removes the hash for good and stamps `revoked_at`; rotating
replaces it. Either takes effect at the broker's next reload (broker/reload.py), which also ends the
connection of a revoked, disabled or rotated account.

Each function runs in one transaction (a savepoint inside a caller's), with parameterised SQL only.
"""

from __future__ import annotations

import csv
import io
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field
from typing import Any, Final, NamedTuple

import psycopg
from psycopg import errors

from broker.acl import AclAccount, AclError, Role, check_username, render_acl
from broker.passwords import hash_secret, new_secret, password_line

Connection = psycopg.Connection[tuple[Any, ...]]

CSV_COLUMNS: Final = ("id", "kind", "name", "group")
SERVICE_ROLES: Final = frozenset({Role.BRIDGE, Role.ENGINE, Role.API})
# The device kind that may publish for other devices (`devices.gateway_id`, docs/gateways.md).
GATEWAY_KIND: Final = "gateway"


class AccountError(ValueError):
    """An account change that cannot be made as asked; the message says why and what to do instead."""


@dataclass(frozen=True, slots=True)
class Credential:
    """A username and its new secret: shown once to whoever provisions the account, never stored."""

    username: str
    secret: str = field(repr=False)


@dataclass(frozen=True, slots=True)
class DeviceSpec:
    """A device to provision: its id and, optionally, registry fields."""

    id: str
    kind: str | None = None
    name: str | None = None
    group: str | None = None


class AccountFiles(NamedTuple):
    """The broker's password file and ACL file, rendered from the database."""

    passwords: str
    acl: str


def add_device(conn: Connection, spec: DeviceSpec) -> Credential:
    """Register the device if needed and give it an account; its secret is returned here and never again."""
    return import_devices(conn, [spec])[0]


def import_devices(conn: Connection, specs: Sequence[DeviceSpec]) -> list[Credential]:
    """Provision every device of `specs` or, if any one cannot be, none of them (one transaction)."""
    seen: set[str] = set()
    for spec in specs:
        _check_name(spec.id, "device id")
        if spec.id in seen:
            raise AccountError(f"device {spec.id!r} is listed twice")
        seen.add(spec.id)
    credentials: list[Credential] = []
    with conn.transaction():
        for spec in specs:
            conn.execute(
                "INSERT INTO devices (id, kind, name, group_name) VALUES (%s, coalesce(%s, 'truck'), %s, %s)"
                " ON CONFLICT (id) DO UPDATE SET kind = coalesce(%s, devices.kind),"
                " name = coalesce(%s, devices.name), group_name = coalesce(%s, devices.group_name)",
                (spec.id, spec.kind, spec.name, spec.group, spec.kind, spec.name, spec.group),
            )
            credentials.append(_insert_account(conn, spec.id, Role.DEVICE))
    return credentials


def read_device_csv(text: str) -> list[DeviceSpec]:
    """Parse a device list: a header naming `id` and any of `kind,name,group`, then one device per row.

    Empty cells mean "not given". `AccountError` names the first bad line.
    """
    reader = csv.DictReader(io.StringIO(text))
    header = [column.strip() for column in reader.fieldnames or []]
    if "id" not in header or not set(header) <= set(CSV_COLUMNS):
        raise AccountError(f"the first line must name the columns: id, and any of kind,name,group; got {header}")
    reader.fieldnames = header
    specs: list[DeviceSpec] = []
    for row in reader:
        if None in row:
            raise AccountError(f"line {reader.line_num}: more cells than columns")
        cells = {key: (value or "").strip() or None for key, value in row.items()}
        device_id = cells.get("id")
        if device_id is None:
            raise AccountError(f"line {reader.line_num}: no device id")
        try:
            _check_name(device_id, "device id")
        except AccountError as exc:
            raise AccountError(f"line {reader.line_num}: {exc}") from None
        specs.append(DeviceSpec(device_id, cells.get("kind"), cells.get("name"), cells.get("group")))
    return specs


def add_integrator(conn: Connection, name: str, *, group: str | None = None) -> Credential:
    """A read-only account for a third party (state, alerts, status); limited to one device group if given."""
    _check_name(name, "integrator name")
    with conn.transaction():
        return _insert_account(conn, name, Role.INTEGRATOR, group=group)


def add_service_account(conn: Connection, role: Role, username: str, *, rotate_existing: bool = False) -> Credential:
    """An account for a bridge or API instance; with `rotate_existing`, an existing one gets a new secret.

    `rotate_existing` suits a launcher that hands a fresh secret to its services at every start.
    """
    if role not in SERVICE_ROLES:
        raise AccountError(f"{role} is not a service role; use one of {sorted(SERVICE_ROLES)}")
    _check_name(username, f"{role} account name")
    with conn.transaction():
        row = conn.execute("SELECT role FROM mqtt_accounts WHERE username = %s", (username,)).fetchone()
        if row is not None and rotate_existing and row[0] == role:
            return rotate(conn, username, roles={role})
        return _insert_account(conn, username, role)


def rotate(conn: Connection, username: str, *, roles: Collection[Role] = (), reinstate: bool = False) -> Credential:
    """Give the account a new secret; the old one stops working (and its connection ends) at the next reload.

    A revoked account stays revoked unless `reinstate` is given. With `roles`, the account must have one
    of them (so that `fleet devices rotate` cannot touch a service account by a typo).
    """
    secret = new_secret()
    with conn.transaction():
        current = _lookup(conn, username, roles)
        if current.revoked and not reinstate:
            raise AccountError(f"{username!r} was revoked; give it a new secret only on purpose (reinstate)")
        conn.execute(
            "UPDATE mqtt_accounts SET secret_hash = %s, secret_rotated_at = now(), revoked_at = NULL"
            " WHERE username = %s",
            (hash_secret(secret), username),
        )
    return Credential(username, secret)


def revoke(conn: Connection, username: str, *, roles: Collection[Role] = ()) -> bool:
    """Remove the account's secret for good; False if it was already revoked.

    The row stays, stamped with `revoked_at`: who had access, and until when.
    """
    with conn.transaction():
        if _lookup(conn, username, roles).revoked:
            return False
        conn.execute("UPDATE mqtt_accounts SET secret_hash = NULL, revoked_at = now() WHERE username = %s", (username,))
    return True


def set_device_disabled(conn: Connection, device_id: str, disabled: bool) -> None:
    """Take a device off the broker (`disabled`) or put it back; unlike revoking, its secret is kept."""
    with conn.transaction():
        found = conn.execute("UPDATE devices SET disabled = %s WHERE id = %s", (disabled, device_id)).rowcount
    if not found:
        raise AccountError(f"no device {device_id!r}")


def render_files(conn: Connection) -> AccountFiles:
    """The password file and the ACL file for the accounts as they are in the database now."""
    rows = conn.execute(
        "SELECT a.username, a.role, a.secret_hash, a.revoked_at IS NULL AND NOT coalesce(d.disabled, false),"
        " a.device_group"
        " FROM mqtt_accounts a LEFT JOIN devices d ON d.id = a.device_id ORDER BY a.username"
    ).fetchall()
    groups = sorted({row[4] for row in rows if row[4] is not None})
    members: dict[str, tuple[str, ...]] = dict.fromkeys(groups, ())
    if groups:
        for group, ids in conn.execute(
            "SELECT group_name, array_agg(id ORDER BY id) FROM devices WHERE group_name = ANY(%s) GROUP BY group_name",
            (groups,),
        ).fetchall():
            members[group] = tuple(ids)
    # Children count only under a device that is a gateway now (its kind can change after they named it).
    children: dict[str, tuple[str, ...]] = dict(
        conn.execute(
            "SELECT c.gateway_id, array_agg(c.id ORDER BY c.id) FROM devices c"
            " JOIN devices g ON g.id = c.gateway_id AND g.kind = %s GROUP BY c.gateway_id",
            (GATEWAY_KIND,),
        ).fetchall()
    )
    passwords: list[str] = []
    accounts: list[AclAccount] = []
    for username, role, secret_hash, active, group in rows:
        can_log_in = bool(active) and secret_hash is not None
        if can_log_in:
            passwords.append(password_line(username, secret_hash))
        devices = members[group] if group is not None else None
        mine = tuple(children.get(username, ())) if role == Role.DEVICE else ()
        accounts.append(AclAccount(username, Role(role), active=can_log_in, devices=devices, children=mine))
    return AccountFiles("".join(passwords), render_acl(accounts))


def check_certificate_name(conn: Connection, name: str) -> None:
    """`AccountError` unless `name` may be a device certificate's CN: a device account, or no account yet.

    On the certificate listener the CN is the user name, with that account's rights: a certificate named
    like a bridge, API or integrator account would log in as that service.
    """
    row = conn.execute("SELECT role FROM mqtt_accounts WHERE username = %s", (name,)).fetchone()
    if row is not None and row[0] != Role.DEVICE:
        raise AccountError(
            f"{name!r} is a {row[0]} account: a certificate with that CN would log in as it; certificates are for devices"
        )


@dataclass(frozen=True, slots=True)
class _Account:
    role: Role
    revoked: bool


def _lookup(conn: Connection, username: str, roles: Collection[Role]) -> _Account:
    row = conn.execute(
        "SELECT role, revoked_at IS NOT NULL FROM mqtt_accounts WHERE username = %s FOR UPDATE", (username,)
    ).fetchone()
    if row is None or (roles and row[0] not in roles):
        what = " or ".join(sorted(roles)) + " account" if roles else "account"
        raise AccountError(f"no {what} {username!r}")
    return _Account(Role(row[0]), bool(row[1]))


def _insert_account(conn: Connection, username: str, role: Role, *, group: str | None = None) -> Credential:
    secret = new_secret()
    try:
        with conn.transaction():
            conn.execute(
                "INSERT INTO mqtt_accounts (username, role, secret_hash, device_group, secret_rotated_at)"
                " VALUES (%s, %s, %s, %s, now())",
                (username, role.value, hash_secret(secret), group),
            )
    except errors.UniqueViolation:
        row = conn.execute("SELECT role FROM mqtt_accounts WHERE username = %s", (username,)).fetchone()
        taken = f"{row[0]} account" if row else "another account"
        raise AccountError(
            f"the name {username!r} is taken ({taken}); rotate its secret, or pick another name"
        ) from None
    return Credential(username, secret)


def _check_name(value: str, what: str) -> None:
    try:
        check_username(value)
    except AclError as exc:
        raise AccountError(f"{what}: {exc}") from None
