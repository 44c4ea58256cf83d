"""Accounts in PostgreSQL: secrets returned once and stored hashed, one namespace, files rendered from rows."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg
import pytest

from broker import accounts
from broker.accounts import AccountError, DeviceSpec
from broker.acl import Role
from broker.passwords import verify_secret

pytestmark = pytest.mark.integration

Connection = psycopg.Connection[tuple[Any, ...]]


@pytest.fixture
def conn(database_url: str) -> Iterator[Connection]:
    """An autocommit connection to a fresh, migrated database."""
    with psycopg.connect(database_url, autocommit=True) as connection:
        yield connection


def _account(conn: Connection, username: str) -> dict[str, Any]:
    cursor = conn.execute("SELECT * FROM mqtt_accounts WHERE username = %s", (username,))
    names = [column.name for column in cursor.description or []]
    row = cursor.fetchone()
    assert row is not None, username
    return dict(zip(names, row, strict=True))


def _count(conn: Connection, table: str) -> int:
    row = conn.execute(f"SELECT count(*) FROM {table}").fetchone()
    assert row is not None
    return int(row[0])


def test_add_device_returns_the_secret_once_and_stores_only_its_hash(conn: Connection) -> None:
    credential = accounts.add_device(conn, DeviceSpec("t-1", kind="trailer", name="Trailer one", group="north"))

    row = _account(conn, "t-1")
    assert (row["role"], row["device_id"], row["revoked_at"]) == ("device", "t-1", None)
    assert verify_secret(credential.secret, row["secret_hash"])
    assert credential.secret not in str(row)
    assert credential.secret not in repr(credential)
    device = conn.execute("SELECT kind, name, group_name FROM devices WHERE id = 't-1'").fetchone()
    assert device == ("trailer", "Trailer one", "north")


def test_add_device_gives_an_account_to_a_device_the_registry_already_has(conn: Connection) -> None:
    conn.execute("INSERT INTO devices (id, kind, name) VALUES ('t-1', 'pump', 'Pump')")

    accounts.add_device(conn, DeviceSpec("t-1", group="south"))

    assert conn.execute("SELECT kind, name, group_name FROM devices WHERE id = 't-1'").fetchone() == (
        "pump",
        "Pump",
        "south",
    )


def test_add_device_twice_is_refused(conn: Connection) -> None:
    accounts.add_device(conn, DeviceSpec("t-1"))

    with pytest.raises(AccountError, match=r"taken \(device account\); rotate"):
        accounts.add_device(conn, DeviceSpec("t-1"))


def test_device_cannot_take_the_name_of_a_service_and_leaves_no_trace(conn: Connection) -> None:
    accounts.add_service_account(conn, Role.BRIDGE, "fleetbridge-bridge")

    with pytest.raises(AccountError, match=r"taken \(bridge account\)"):
        accounts.add_device(conn, DeviceSpec("fleetbridge-bridge"))

    assert _count(conn, "devices") == 0


def test_import_devices_is_all_or_nothing(conn: Connection) -> None:
    accounts.add_integrator(conn, "acme")

    with pytest.raises(AccountError, match=r"'acme' is taken \(integrator account\)"):
        accounts.import_devices(conn, [DeviceSpec("t-1"), DeviceSpec("acme"), DeviceSpec("t-3")])
    with pytest.raises(AccountError, match="listed twice"):
        accounts.import_devices(conn, [DeviceSpec("t-1"), DeviceSpec("t-1")])

    assert (_count(conn, "devices"), _count(conn, "mqtt_accounts")) == (0, 1)
    credentials = accounts.import_devices(conn, [DeviceSpec("t-1"), DeviceSpec("t-2")])
    assert [c.username for c in credentials] == ["t-1", "t-2"]
    assert len({c.secret for c in credentials}) == 2


@pytest.mark.parametrize("name", ["a/b", "a+b", "#", "a b", "x:y", "abc\n"])
def test_names_that_could_widen_an_acl_are_refused_here_and_by_the_database(conn: Connection, name: str) -> None:
    with pytest.raises(AccountError, match="not a valid account name"):
        accounts.add_integrator(conn, name)
    with pytest.raises(psycopg.errors.CheckViolation):
        conn.execute("INSERT INTO mqtt_accounts (username, role) VALUES (%s, 'integrator')", (name,))


def test_rotate_replaces_the_secret(conn: Connection) -> None:
    old = accounts.add_device(conn, DeviceSpec("t-1"))

    new = accounts.rotate(conn, "t-1", roles={Role.DEVICE})

    row = _account(conn, "t-1")
    assert verify_secret(new.secret, row["secret_hash"])
    assert not verify_secret(old.secret, row["secret_hash"])
    assert row["secret_rotated_at"] > row["created_at"]


def test_rotate_and_revoke_check_the_role_they_are_given(conn: Connection) -> None:
    accounts.add_service_account(conn, Role.API, "fleetbridge-api")

    with pytest.raises(AccountError, match="no device account 'fleetbridge-api'"):
        accounts.rotate(conn, "fleetbridge-api", roles={Role.DEVICE})
    with pytest.raises(AccountError, match="no device account 'fleetbridge-api'"):
        accounts.revoke(conn, "fleetbridge-api", roles={Role.DEVICE})
    with pytest.raises(AccountError, match="no account 'nobody'"):
        accounts.rotate(conn, "nobody")


def test_revoke_removes_the_secret_for_good_unless_reinstated(conn: Connection) -> None:
    accounts.add_device(conn, DeviceSpec("t-1"))

    assert accounts.revoke(conn, "t-1") is True
    assert accounts.revoke(conn, "t-1") is False

    row = _account(conn, "t-1")
    assert row["secret_hash"] is None
    assert row["revoked_at"] is not None
    with pytest.raises(AccountError, match="revoked"):
        accounts.rotate(conn, "t-1")
    reinstated = accounts.rotate(conn, "t-1", reinstate=True)
    assert verify_secret(reinstated.secret, _account(conn, "t-1")["secret_hash"])


def test_service_account_can_be_reissued_for_a_launcher(conn: Connection) -> None:
    first = accounts.add_service_account(conn, Role.BRIDGE, "fleetbridge-bridge")

    again = accounts.add_service_account(conn, Role.BRIDGE, "fleetbridge-bridge", rotate_existing=True)

    assert again.secret != first.secret
    assert verify_secret(again.secret, _account(conn, "fleetbridge-bridge")["secret_hash"])
    with pytest.raises(AccountError, match="not a service role"):
        accounts.add_service_account(conn, Role.INTEGRATOR, "x")


def test_deleting_a_device_deletes_its_account(conn: Connection) -> None:
    accounts.add_device(conn, DeviceSpec("t-1"))

    conn.execute("DELETE FROM devices WHERE id = 't-1'")

    assert _count(conn, "mqtt_accounts") == 0


def test_render_files_lets_in_only_active_accounts_and_denies_the_others(conn: Connection) -> None:
    accounts.import_devices(
        conn, [DeviceSpec("t-1", group="north"), DeviceSpec("t-2", group="north"), DeviceSpec("t-3", group="south")]
    )
    conn.execute("INSERT INTO devices (id, group_name) VALUES ('t-4', 'north')")  # no account, still in the group
    accounts.add_service_account(conn, Role.BRIDGE, "fleetbridge-bridge")
    accounts.add_integrator(conn, "north-view", group="north")
    accounts.add_integrator(conn, "empty-view", group="nobody")
    accounts.revoke(conn, "t-2")
    accounts.set_device_disabled(conn, "t-3", True)

    files = accounts.render_files(conn)

    users = [line.split(":", 1)[0] for line in files.passwords.splitlines()]
    assert users == ["empty-view", "fleetbridge-bridge", "north-view", "t-1"]
    blocks = {block.splitlines()[1]: block.splitlines()[2:] for block in files.acl.split("\n\n")[2:]}
    assert blocks["user t-2"] == blocks["user t-3"] == ["topic deny #"]
    assert [line for line in blocks["user north-view"] if "/state" in line] == [
        "topic read fleet/v1/t-1/state",
        "topic read fleet/v1/t-2/state",
        "topic read fleet/v1/t-4/state",
    ]
    assert blocks["user empty-view"] == ["topic deny fleet/v1/empty-view/#"]
    assert "user t-1" not in blocks


def test_set_device_disabled_needs_a_known_device(conn: Connection) -> None:
    with pytest.raises(AccountError, match="no device 'ghost'"):
        accounts.set_device_disabled(conn, "ghost", True)
