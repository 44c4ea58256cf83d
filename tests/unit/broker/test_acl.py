"""The rendered ACL: devices confined by patterns, roles by user blocks, nothing the broker would refuse."""

from __future__ import annotations

import pytest

from broker.acl import AclAccount, AclError, Role, check_acl, is_username, render_acl


def _block(text: str, username: str) -> list[str]:
    """The lines after `user <username>` up to the next blank line."""
    lines = text.splitlines()
    start = lines.index(f"user {username}") + 1
    block: list[str] = []
    for line in lines[start:]:
        if not line:
            break
        block.append(line)
    return block


def test_render_confines_devices_to_their_own_topics_with_patterns() -> None:
    text = render_acl([AclAccount("truck-1", Role.DEVICE)])

    patterns = [line for line in text.splitlines() if line.startswith("pattern ")]
    assert patterns == [
        "pattern write fleet/v1/%u/telemetry",
        "pattern write fleet/v1/%u/events",
        "pattern write fleet/v1/%u/status",
        "pattern write fleet/v1/%u/cmd/ack",
        "pattern write fleet/v1/%u/ota",
        "pattern read fleet/v1/%u/cmd",
        "pattern read fleet/v1/%u/persisted",
        "pattern read fleet/v1/%u/rejected",
        "pattern read fleet/v1/%u/config",
        "pattern write fleet/v1/%u/config/reported",
    ]
    assert "user truck-1" not in text, "an active device needs nothing but the patterns"


def test_render_gives_the_bridge_its_reads_and_writes_on_every_device() -> None:
    text = render_acl([AclAccount("fleetbridge-bridge", Role.BRIDGE)])

    assert _block(text, "fleetbridge-bridge") == [
        "topic deny fleet/v1/fleetbridge-bridge/#",
        "topic read fleet/v1/+/telemetry",
        "topic read fleet/v1/+/events",
        "topic read fleet/v1/+/status",
        "topic read fleet/v1/+/cmd/ack",
        "topic read fleet/v1/+/ota",
        "topic write fleet/v1/+/state",
        "topic write fleet/v1/+/persisted",
        "topic write fleet/v1/+/rejected",
    ]


def test_render_lets_the_api_send_commands_and_forward_http_telemetry_and_read_the_replies_but_not_acks() -> None:
    text = render_acl([AclAccount("fleetbridge-api", Role.API)])

    assert _block(text, "fleetbridge-api") == [
        "topic deny fleet/v1/fleetbridge-api/#",
        "topic write fleet/v1/+/cmd",
        "topic write fleet/v1/+/telemetry",
        "topic read fleet/v1/+/persisted",
        "topic read fleet/v1/+/rejected",
        "topic write fleet/v1/+/config",
        "topic read fleet/v1/+/config/reported",
    ]


def test_render_leaves_the_device_patterns_unchanged_by_the_api_grants() -> None:
    with_api = render_acl([AclAccount("fleetbridge-api", Role.API), AclAccount("t-1", Role.DEVICE)])
    without = render_acl([AclAccount("t-1", Role.DEVICE)])

    assert [line for line in with_api.splitlines() if line.startswith("pattern ")] == [
        line for line in without.splitlines() if line.startswith("pattern ")
    ]
    assert "user t-1" not in with_api


def test_render_gives_integrators_read_only_rights() -> None:
    text = render_acl([AclAccount("acme", Role.INTEGRATOR)])

    block = _block(text, "acme")
    assert block == [
        "topic deny fleet/v1/acme/#",
        "topic read fleet/v1/+/state",
        "topic read fleet/v1/+/alerts",
        "topic read fleet/v1/+/status",
    ]
    assert not [line for line in block if " write " in line or " readwrite " in line]


def test_render_limits_a_grouped_integrator_to_its_devices_by_name() -> None:
    text = render_acl([AclAccount("acme", Role.INTEGRATOR, devices=("t-2", "t-1"))])

    assert _block(text, "acme") == [
        "topic deny fleet/v1/acme/#",
        "topic read fleet/v1/t-1/state",
        "topic read fleet/v1/t-1/alerts",
        "topic read fleet/v1/t-1/status",
        "topic read fleet/v1/t-2/state",
        "topic read fleet/v1/t-2/alerts",
        "topic read fleet/v1/t-2/status",
    ]


def test_render_gives_an_integrator_of_an_empty_group_nothing() -> None:
    text = render_acl([AclAccount("acme", Role.INTEGRATOR, devices=())])

    assert _block(text, "acme") == ["topic deny fleet/v1/acme/#"]


@pytest.mark.parametrize("role", list(Role))
def test_render_denies_revoked_or_disabled_accounts_everything(role: Role) -> None:
    text = render_acl([AclAccount("gone", role, active=False)])

    assert _block(text, "gone") == ["topic deny #"]


def test_render_lets_the_engine_write_alerts_and_nothing_else() -> None:
    text = render_acl([AclAccount("fleetbridge-engine-1", Role.ENGINE)])

    assert _block(text, "fleetbridge-engine-1") == [
        "topic deny fleet/v1/fleetbridge-engine-1/#",
        "topic write fleet/v1/+/alerts",
    ]


@pytest.mark.parametrize("role", [Role.BRIDGE, Role.ENGINE, Role.API, Role.INTEGRATOR])
def test_render_denies_every_non_device_account_the_device_rights_patterns_give_it(role: Role) -> None:
    text = render_acl([AclAccount("svc-1", role)])

    assert _block(text, "svc-1")[0] == "topic deny fleet/v1/svc-1/#"


@pytest.mark.parametrize("username", ["a/b", "a+", "#", "a b", "abc\n", "x:y", "", "-lead", "é"])
def test_render_refuses_usernames_that_could_widen_a_pattern_or_break_the_file(username: str) -> None:
    assert not is_username(username)
    with pytest.raises(AclError, match="not a valid account name"):
        render_acl([AclAccount(username, Role.INTEGRATOR)])


def test_render_refuses_a_device_group_for_other_roles() -> None:
    with pytest.raises(AclError, match="only integrators"):
        render_acl([AclAccount("fleetbridge-bridge", Role.BRIDGE, devices=("t-1",))])


def test_render_gives_a_gateway_its_childrens_telemetry_events_and_status_and_nothing_else() -> None:
    text = render_acl([AclAccount("gw-1", Role.DEVICE, children=("s-2", "s-1")), AclAccount("s-1", Role.DEVICE)])

    assert _block(text, "gw-1") == [
        "topic write fleet/v1/s-1/telemetry",
        "topic write fleet/v1/s-1/events",
        "topic write fleet/v1/s-1/status",
        "topic read fleet/v1/s-1/persisted",
        "topic read fleet/v1/s-1/rejected",
        "topic write fleet/v1/s-2/telemetry",
        "topic write fleet/v1/s-2/events",
        "topic write fleet/v1/s-2/status",
        "topic read fleet/v1/s-2/persisted",
        "topic read fleet/v1/s-2/rejected",
    ]
    assert "user s-1" not in text  # a child is a plain device: the patterns only
    assert "pattern write fleet/v1/%u/telemetry" in text  # and the gateway keeps its own device rights
    check_acl(text)


def test_render_denies_a_disabled_gateway_everything_its_children_gave_it() -> None:
    text = render_acl([AclAccount("gw-1", Role.DEVICE, active=False, children=("s-1",))])

    assert _block(text, "gw-1") == ["topic deny #"]


@pytest.mark.parametrize("role", [Role.BRIDGE, Role.ENGINE, Role.API, Role.INTEGRATOR])
def test_render_refuses_children_for_accounts_that_are_not_devices(role: Role) -> None:
    with pytest.raises(AclError, match="only a device can be a gateway"):
        render_acl([AclAccount("svc-1", role, children=("s-1",))])


@pytest.mark.parametrize("child", ["gw-1", "a/#", "+"])
def test_render_refuses_a_gateway_child_that_is_itself_or_not_a_device_id(child: str) -> None:
    with pytest.raises(AclError):
        render_acl([AclAccount("gw-1", Role.DEVICE, children=(child,))])


def test_render_is_deterministic_and_passes_its_own_check() -> None:
    accounts = [
        AclAccount("zeta", Role.INTEGRATOR),
        AclAccount("fleetbridge-api", Role.API),
        AclAccount("t-9", Role.DEVICE, active=False),
        AclAccount("fleetbridge-bridge", Role.BRIDGE),
        AclAccount("north", Role.INTEGRATOR, devices=("t-1",)),
    ]

    text = render_acl(accounts)

    assert text == render_acl(reversed(accounts))
    check_acl(text)
    users = [line.removeprefix("user ") for line in text.splitlines() if line.startswith("user ")]
    assert users == ["t-9", "fleetbridge-bridge", "fleetbridge-api", "north", "zeta"]


@pytest.mark.parametrize(
    "line",
    [
        "bogus line here",
        "  # an indented comment is not a comment to Mosquitto",
        "topic read fleet/v1/#/x",
        "topic read fleet/v1/a+/state",
        "topic maybe fleet/v1/+/state",
        "user a/b",
        "pattern read",
    ],
)
def test_check_acl_refuses_lines_that_would_switch_acls_off(line: str) -> None:
    with pytest.raises(AclError, match="ACL line 2"):
        check_acl(f"# header\n{line}\n")


def test_check_acl_accepts_the_mosquitto_forms() -> None:
    check_acl("# c\n\nuser a\ntopic read fleet/v1/+/state\ntopic readwrite x/#\npattern write fleet/v1/%u/t\n")
