"""MQTT topic grammar (v1): parse a topic once into a value object, build topics from ids."""

from __future__ import annotations

import enum
import functools
import re
from dataclasses import dataclass

PREFIX = "fleet/v1"
DEVICE_ID_PATTERN = r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}"
_DEVICE_ID_RE = re.compile(DEVICE_ID_PATTERN)
SHARE_GROUP = "fleetbridge"


class TopicKind(enum.StrEnum):
    """The last segment(s) of a device topic, naming what flows on it."""

    TELEMETRY = "telemetry"
    EVENTS = "events"
    STATUS = "status"
    CMD = "cmd"
    CMD_ACK = "cmd/ack"
    PERSISTED = "persisted"
    REJECTED = "rejected"
    STATE = "state"
    ALERTS = "alerts"
    CONFIG = "config"
    CONFIG_REPORTED = "config/reported"
    OTA = "ota"


class TopicError(ValueError):
    """A topic that is not part of the v1 grammar."""


def is_device_id(value: str) -> bool:
    """True when `value` is a valid device id (also the MQTT username and topic segment)."""
    # fullmatch, not match with `^…$`: `$` also matches before a trailing newline ("t1\n").
    return _DEVICE_ID_RE.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class DeviceTopic:
    """A parsed `fleet/v1/{device_id}/{kind}` topic."""

    device_id: str
    kind: TopicKind

    def __str__(self) -> str:
        return f"{PREFIX}/{self.device_id}/{self.kind.value}"


@functools.lru_cache(maxsize=65536)
def parse(topic: str) -> DeviceTopic:
    """Parse a device topic; raise `TopicError` with the reason when it does not fit the grammar.

    Cached: a fleet reuses a bounded set of topics, and parsing is on the hot path.
    """
    parts = topic.split("/")
    if len(parts) < 4 or parts[0] != "fleet" or parts[1] != "v1":
        raise TopicError(f"topic {topic!r} is not under {PREFIX}/")
    device_id = parts[2]
    if not is_device_id(device_id):
        raise TopicError(f"device id {device_id!r} does not match {DEVICE_ID_PATTERN}")
    try:
        kind = TopicKind("/".join(parts[3:]))
    except ValueError:
        raise TopicError(f"unknown topic kind {'/'.join(parts[3:])!r}") from None
    return DeviceTopic(device_id, kind)


def device_topic(device_id: str, kind: TopicKind) -> str:
    """Build the topic for one device; the id must already be valid."""
    return f"{PREFIX}/{device_id}/{kind.value}"


def wildcard(kind: TopicKind) -> str:
    """The topic filter matching `kind` for every device."""
    return f"{PREFIX}/+/{kind.value}"


def shared(kind: TopicKind, group: str = SHARE_GROUP) -> str:
    """The shared-subscription filter that spreads `kind` over the bridge instances of `group`."""
    return f"$share/{group}/{wildcard(kind)}"
