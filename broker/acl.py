"""The Mosquitto ACL file: devices confined to their own topics, services and integrators to their roles.

Devices get their rights from `pattern` lines, where Mosquitto puts the connecting username (%u, the
device id) into the topic, so the file does not grow with the fleet. Pattern lines apply to EVERY
username, services and integrators included; so:

- every account name follows the device-id grammar (no `+ # /`, checked here and in the database), and
  all names share one table, so no device can be named like a service (models/migrations/0003);
- each non-device account gets `topic deny fleet/v1/<its name>/#`: it cannot act as a device named like
  it. Mosquitto checks a user's own lines before the patterns, and `deny` lines first of all;
- a gateway (a device account of kind `gateway`, docs/gateways.md) also gets a `user` block with one set
  of lines per child device it publishes for, and nothing on any other device;
- a revoked or disabled account keeps a `user` block with `topic deny #`, so a connection that is somehow
  still open is worth nothing (Mosquitto 2.0.11 also ends it at the reload: see broker/reload.py).

How Mosquitto 2.0.11 applies these (measured, tests/integration/broker/test_access_control.py): a PUBLISH
outside the ACL is answered with PUBACK 0x87 (QoS 1) or dropped (QoS 0) and never delivered; SUBSCRIBE is
NOT checked (SUBACK grants any filter), READ is checked for every message delivered instead, with the
message's own topic — so `$share/<group>/fleet/v1/+/telemetry` needs only `read fleet/v1/+/telemetry`,
and an integrator limited to a group may subscribe to `fleet/v1/+/state` and gets only its group's.

An ACL file Mosquitto cannot parse turns ACL checking OFF at a reload (measured: every client may then
publish and read everything), so `check_acl` mirrors the broker's parser and broker/reload.py runs it
before any file reaches the broker.
"""

from __future__ import annotations

import enum
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Final

from models.topics import DEVICE_ID_PATTERN, PREFIX, TopicKind, device_topic, wildcard

_USERNAME_RE: Final = re.compile(DEVICE_ID_PATTERN)
HEADER: Final = "# Rendered by broker.acl from the mqtt_accounts table; do not edit (`fleet devices ...` rewrites it)."


class AclError(ValueError):
    """An account or ACL text that must not reach the broker."""


class Role(enum.StrEnum):
    """What an MQTT account is for; its ACL follows from it."""

    DEVICE = "device"
    BRIDGE = "bridge"
    ENGINE = "engine"
    API = "api"
    INTEGRATOR = "integrator"


class Access(enum.StrEnum):
    """The access words of a Mosquitto ACL line."""

    READ = "read"
    WRITE = "write"
    DENY = "deny"


@dataclass(frozen=True, slots=True)
class Grant:
    """One right on one kind of device topic."""

    access: Access
    kind: TopicKind


_READ, _WRITE = Access.READ, Access.WRITE

# What a device may do on its own topics (fleet/v1/{its id}/...), and nothing else.
DEVICE_GRANTS: Final = (
    Grant(_WRITE, TopicKind.TELEMETRY),
    Grant(_WRITE, TopicKind.EVENTS),
    Grant(_WRITE, TopicKind.STATUS),
    Grant(_WRITE, TopicKind.CMD_ACK),
    Grant(_WRITE, TopicKind.OTA),
    Grant(_READ, TopicKind.CMD),
    Grant(_READ, TopicKind.PERSISTED),
    Grant(_READ, TopicKind.REJECTED),
    Grant(_READ, TopicKind.CONFIG),
    Grant(_WRITE, TopicKind.CONFIG_REPORTED),
)

# What a gateway may do on each of its children's topics (fleet/v1/{child id}/...), besides its own device
# rights: publish for them, and hear what the bridge stored or refused, so its store can free their samples.
GATEWAY_CHILD_GRANTS: Final = (
    Grant(_WRITE, TopicKind.TELEMETRY),
    Grant(_WRITE, TopicKind.EVENTS),
    Grant(_WRITE, TopicKind.STATUS),
    Grant(_READ, TopicKind.PERSISTED),
    Grant(_READ, TopicKind.REJECTED),
)

# What the other roles may do on every device's topics (or, for a grouped integrator, on its group's).
ROLE_GRANTS: Final[dict[Role, tuple[Grant, ...]]] = {
    Role.BRIDGE: (
        Grant(_READ, TopicKind.TELEMETRY),
        Grant(_READ, TopicKind.EVENTS),
        Grant(_READ, TopicKind.STATUS),
        Grant(_READ, TopicKind.CMD_ACK),
        Grant(_READ, TopicKind.OTA),
        Grant(_WRITE, TopicKind.STATE),
        Grant(_WRITE, TopicKind.PERSISTED),
        Grant(_WRITE, TopicKind.REJECTED),
    ),
    # The rules engine publishes alert changes, and reads nothing: its input is the database's feed.
    Role.ENGINE: (Grant(_WRITE, TopicKind.ALERTS),),
    # Commands to devices (their acknowledgements come back through the bridge, durably). Telemetry on
    # behalf of HTTP devices (api/ingest/): the API publishes only after checking the device's own secret,
    # and reads the bridge's replies to learn what was committed.
    Role.API: (
        Grant(_WRITE, TopicKind.CMD),
        Grant(_WRITE, TopicKind.TELEMETRY),
        Grant(_READ, TopicKind.PERSISTED),
        Grant(_READ, TopicKind.REJECTED),
        # The device twin (api/twin/): desired documents out, retained; the devices' reports in.
        Grant(_WRITE, TopicKind.CONFIG),
        Grant(_READ, TopicKind.CONFIG_REPORTED),
    ),
    Role.INTEGRATOR: (
        Grant(_READ, TopicKind.STATE),
        Grant(_READ, TopicKind.ALERTS),
        Grant(_READ, TopicKind.STATUS),
    ),
}


@dataclass(frozen=True, slots=True)
class AclAccount:
    """What the ACL needs to know about one account."""

    username: str
    role: Role
    # False for a revoked or disabled account: it is denied everything.
    active: bool = True
    # An integrator limited to a device group: the group's device ids. None: every device.
    devices: tuple[str, ...] | None = None
    # A gateway device: the ids of the devices it publishes for (`devices.gateway_id`). Devices only.
    children: tuple[str, ...] = ()


def is_username(value: str) -> bool:
    """True when `value` may be an MQTT account name: the device-id grammar, matched in full.

    Checked here, right before the files are written, with `fullmatch`: a trailing line break (which a
    `^…$` regex lets through) would start a line of its own in the line-based password and ACL files.
    """
    return _USERNAME_RE.fullmatch(value) is not None


def check_username(value: str) -> str:
    """`value`, or `AclError` when it is not a valid account name."""
    if not is_username(value):
        raise AclError(f"{value!r} is not a valid account name: it must match {DEVICE_ID_PATTERN}")
    return value


def render_acl(accounts: Iterable[AclAccount]) -> str:
    """The whole ACL file for `accounts`: device patterns, then one block per account that needs one.

    Deterministic (blocks sorted by role, then name), so an unchanged database renders the same bytes.
    """
    lines = [HEADER, "", "# Devices: every account may use fleet/v1/<its own username>/... like this, and only so."]
    lines += [f"pattern {grant.access} {PREFIX}/%u/{grant.kind}" for grant in DEVICE_GRANTS]
    order = list(Role)
    for account in sorted(accounts, key=lambda a: (order.index(a.role), a.username)):
        block = _user_block(account)
        if block:
            lines += ["", *block]
    return "\n".join(lines) + "\n"


def _user_block(account: AclAccount) -> list[str]:
    name = check_username(account.username)
    if not account.active:
        return [f"# {name}: {account.role}, revoked or disabled", f"user {name}", f"topic {Access.DENY} #"]
    if account.children and account.role is not Role.DEVICE:
        raise AclError(f"{name}: only a device can be a gateway for other devices")
    if account.role is Role.DEVICE:
        return _gateway_block(name, account.children)  # beside the patterns, which are all a device gets
    if account.devices is not None and account.role is not Role.INTEGRATOR:
        raise AclError(f"{name}: only integrators can be limited to a device group")
    scope = "every device" if account.devices is None else f"{len(account.devices)} devices of its group"
    lines = [
        f"# {name}: {account.role}, {scope}",
        f"user {name}",
        # Pattern lines give every username device rights on fleet/v1/<username>/: not to this one.
        f"topic {Access.DENY} {PREFIX}/{name}/#",
    ]
    grants = ROLE_GRANTS[account.role]
    if account.devices is None:
        lines += [f"topic {grant.access} {wildcard(grant.kind)}" for grant in grants]
    else:
        for device_id in sorted(account.devices):
            check_username(device_id)
            lines += [f"topic {grant.access} {device_topic(device_id, grant.kind)}" for grant in grants]
    return lines


def _gateway_block(name: str, children: tuple[str, ...]) -> list[str]:
    if not children:
        return []
    # Its own topics come from the patterns, which Mosquitto checks after these lines.
    lines = [f"# {name}: gateway, {len(children)} devices", f"user {name}"]
    for child in sorted(children):
        if check_username(child) == name:
            raise AclError(f"{name}: a gateway cannot be its own child")
        lines += [f"topic {grant.access} {device_topic(child, grant.kind)}" for grant in GATEWAY_CHILD_GRANTS]
    return lines


_ACCESS_WORDS: Final = frozenset({"read", "write", "readwrite", "deny"})


def check_acl(text: str) -> None:
    """Raise `AclError` naming the first line Mosquitto 2.0 would refuse (which turns ACLs off at a reload).

    Mirrors `aclfile__parse`: a comment starts with `#` in the first column; other lines are `user <name>`,
    `topic [read|write|readwrite|deny] <filter>` or `pattern [...] <filter>` with a valid topic filter.
    Stricter than the broker where it costs nothing: names must be valid account names.
    """
    for number, raw in enumerate(text.splitlines(), start=1):
        line = raw.rstrip()
        if not line or line.startswith("#"):
            continue
        where = f"ACL line {number} ({line!r})"
        word, _, rest = line.partition(" ")
        if word == "user":
            if not is_username(rest):
                raise AclError(f"{where}: not a valid account name")
        elif word in {"topic", "pattern"}:
            access, _, topic = rest.partition(" ")
            if access not in _ACCESS_WORDS or not topic:
                raise AclError(f"{where}: expected `{word} read|write|readwrite|deny <filter>`")
            _check_filter(topic, where)
        else:
            raise AclError(f"{where}: not a comment, `user`, `topic` or `pattern` line")


def _check_filter(topic: str, where: str) -> None:
    levels: Sequence[str] = topic.split("/")
    for index, level in enumerate(levels):
        if ("+" in level and level != "+") or ("#" in level and (level != "#" or index != len(levels) - 1)):
            raise AclError(f"{where}: {topic!r} is not a valid topic filter")
    if " " in topic or not topic.isprintable():
        raise AclError(f"{where}: {topic!r} contains blanks or control characters")
