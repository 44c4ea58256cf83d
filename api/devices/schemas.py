"""Request and response payloads of the devices domain. A device's state is `models.state.DeviceState` itself.

Patches use msgspec's `UNSET` for "not given", so that `null` can mean "clear" (a name, a group) while an
absent field leaves the column as it is.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from models.state import PresenceState
from models.topics import DEVICE_ID_PATTERN

DEVICE_NAME_MAX_CHARS: Final = 128
# Kinds and groups follow the device-id grammar: safe in URLs, logs and the broker's files.
KIND_PATTERN: Final = f"^{DEVICE_ID_PATTERN}$"
GROUP_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"
GROUP_DESCRIPTION = "1 to 128 of A-Z a-z 0-9 _ . -, starting with a letter or digit"

DeviceId = Annotated[str, Meta(pattern=f"^{DEVICE_ID_PATTERN}$", description="the device id (= its MQTT username)")]
DeviceName = Annotated[str, Meta(min_length=1, max_length=DEVICE_NAME_MAX_CHARS)]
Kind = Annotated[str, Meta(pattern=KIND_PATTERN, description="1 to 64 of A-Z a-z 0-9 _ . -")]
GroupName = Annotated[str, Meta(pattern=GROUP_PATTERN, description=GROUP_DESCRIPTION)]
Status = Literal["online", "offline", "unknown", "disabled"]


class Device(msgspec.Struct, frozen=True, kw_only=True):
    """One row of the device registry; the bridge inserts it when a device first appears."""

    id: str
    kind: str
    name: str | None
    group: str | None
    metadata: dict[str, Any]
    created_at: datetime
    last_seen: datetime | None
    disabled: bool
    gateway: str | None = None
    """The gateway that publishes for this device (docs/gateways.md); null: the device publishes itself."""
    site: str | None = None
    """The field site a gateway serves."""


class DevicePage(msgspec.Struct, frozen=True, kw_only=True):
    """A page of devices ordered by id; pass `next_cursor` as `cursor` for the next page (null: no more)."""

    items: list[Device]
    next_cursor: str | None


class MqttAccount(msgspec.Struct, frozen=True, kw_only=True):
    """A device's broker account as the registry knows it (never its secret, nor the secret's hash)."""

    created_at: datetime
    secret_rotated_at: datetime | None
    revoked_at: datetime | None


class DeviceDetails(Device, frozen=True, kw_only=True):
    """A registry row with its presence (as the bridge last recorded it) and its broker account."""

    presence: PresenceState | None
    account: MqttAccount | None
    """None: the device has no broker account (the bridge registered it from an anonymous broker)."""


class DeviceCreate(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """A device to provision: its registry row and its broker account."""

    id: DeviceId
    kind: Kind = "truck"
    name: DeviceName | None = None
    group: GroupName | None = None
    metadata: dict[str, Any] = {}
    gateway: DeviceId | None = None
    """A registered device of kind `gateway` that will publish for this one (docs/gateways.md)."""
    site: GroupName | None = None
    """The field site, for a gateway."""


class DevicePatch(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """The fields to change; absent fields stay as they are, `null` clears `name` or `group`."""

    name: DeviceName | msgspec.UnsetType | None = msgspec.UNSET
    kind: Kind | msgspec.UnsetType = msgspec.UNSET
    group: GroupName | msgspec.UnsetType | None = msgspec.UNSET
    metadata: dict[str, Any] | msgspec.UnsetType = msgspec.UNSET
    """Replaces the whole object."""
    disabled: bool | msgspec.UnsetType = msgspec.UNSET
    """True takes the device off the broker (its secret is kept); false lets it back."""
    gateway: DeviceId | msgspec.UnsetType | None = msgspec.UNSET
    """A device of kind `gateway` to publish for this one; `null`: the device publishes itself again."""
    site: GroupName | msgspec.UnsetType | None = msgspec.UNSET


class BrokerUpdate(msgspec.Struct, frozen=True, kw_only=True):
    """Whether a change reached the brokers.

    The API only writes the database; each broker's agent (`fleet broker agent`, or the one `fleet up`
    runs) applies the change and acknowledges the accounts `revision` it applied. `applied`: every live
    agent applied it (`agents`) within a moment; `pending`: stored, but not in effect everywhere yet —
    no agent is running, or some (`waiting`) have not applied it (`detail` says what to do); `unchanged`:
    nothing the broker reads changed.
    """

    status: Literal["applied", "pending", "unchanged"]
    detail: str
    revision: int | None = None
    agents: list[str] = []
    waiting: list[str] = []


class DeviceChange(msgspec.Struct, frozen=True, kw_only=True):
    """A device after a change, and whether the broker has it."""

    device: DeviceDetails
    broker: BrokerUpdate


class ProvisionedDevice(msgspec.Struct, frozen=True, kw_only=True):
    """A device just provisioned or given a new secret: `secret` is in this answer only.

    The device logs in to the broker with username = `device.id` and password = `secret`.
    """

    device: DeviceDetails
    secret: str
    broker: BrokerUpdate


class DeletedDevice(msgspec.Struct, frozen=True, kw_only=True):
    """What deleting a device did."""

    id: str
    broker: BrokerUpdate


class RefusedMessage(msgspec.Struct, frozen=True, kw_only=True):
    """A message, or one sample of it, that the bridge refused and dead-lettered, with the reason.

    `payload_preview` is the start of the payload as text, safe to show: bytes that are not UTF-8 and
    control or formatting characters (line breaks, bidirectional overrides) are written as escapes.
    """

    id: int
    device_id: str | None
    topic: str
    received_at: datetime
    reason: str
    index: int | None  # which sample of the message; null: the message as a whole
    seq: int | None
    boot: int | None
    payload_size: int
    payload_sha256: str
    payload_preview: str
    preview_truncated: bool


class RefusedPage(msgspec.Struct, frozen=True, kw_only=True):
    """Refused messages, newest first; pass `next_cursor` as `cursor` for older ones (null: no more)."""

    items: list[RefusedMessage]
    next_cursor: str | None
