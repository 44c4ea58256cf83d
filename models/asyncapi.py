"""The AsyncAPI 3.0 document of every MQTT topic, generated from the msgspec types the code uses.

`python -m models.asyncapi > docs/asyncapi.json` regenerates the checked-in copy; a test fails when the
two drift apart, and the API serves the generated document.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from models.events import Command, CommandAck, Event, Status
from models.state import DeviceState, Persisted, RejectedNotice
from models.telemetry import KNOWN_METRICS, Sample, TelemetryBatch
from models.topics import DEVICE_ID_PATTERN, PREFIX, TopicKind

VERSION: Final = "1.0.0"


@dataclass(frozen=True, slots=True)
class Channel:
    """One topic of the v1 grammar and what flows on it."""

    kind: TopicKind
    action: str  # "send": the application (bridge/API) sends; "receive": it receives from devices
    payloads: tuple[type[msgspec.Struct], ...]
    summary: str
    qos: int
    retained: bool = False


CHANNELS: Final = (
    Channel(TopicKind.TELEMETRY, "receive", (Sample, TelemetryBatch), "Samples from a device: one, or a batch.", 1),
    Channel(TopicKind.EVENTS, "receive", (Event,), "Discrete events (ignition, harsh braking, door).", 1),
    Channel(TopicKind.STATUS, "receive", (Status,), "Presence: `online` on connect, `offline` as Last Will.", 1, True),
    Channel(TopicKind.CMD, "send", (Command,), "A command to the device.", 1),
    Channel(TopicKind.CMD_ACK, "receive", (CommandAck,), "The device's answer to a command.", 1),
    Channel(TopicKind.PERSISTED, "send", (Persisted,), "Seq ranges just committed: the device may free them.", 0),
    Channel(TopicKind.REJECTED, "send", (RejectedNotice,), "Why a message or sample was refused.", 0),
    Channel(TopicKind.STATE, "send", (DeviceState,), "Normalised last-known state, for integrators.", 0, True),
)


def document() -> dict[str, Any]:
    """The AsyncAPI document as a JSON-ready dict (stable ordering, so the checked-in copy can be diffed)."""
    types = sorted({t for c in CHANNELS for t in c.payloads}, key=lambda t: t.__name__)
    _, schemas = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for channel in CHANNELS:
        name = channel.kind.value.replace("/", "_")
        channel_messages = {}
        for payload in channel.payloads:
            message_name = f"{name}_{payload.__name__}"
            messages[message_name] = {
                "name": payload.__name__,
                "contentType": "application/json",
                "payload": {"$ref": f"#/components/schemas/{payload.__name__}"},
                "bindings": {"mqtt": {"qos": channel.qos, "retain": channel.retained}},
            }
            channel_messages[payload.__name__] = {"$ref": f"#/components/messages/{message_name}"}
        channels[name] = {
            "address": f"{PREFIX}/{{deviceId}}/{channel.kind.value}",
            "summary": channel.summary,
            "parameters": {"deviceId": {"$ref": "#/components/parameters/deviceId"}},
            "messages": channel_messages,
        }
        operations[f"{channel.action}_{name}"] = {
            "action": channel.action,
            "channel": {"$ref": f"#/channels/{name}"},
            "summary": channel.summary,
        }
    return {
        "asyncapi": "3.0.0",
        "info": {
            "title": "fleetbridge MQTT topics",
            "version": VERSION,
            "description": (
                "Topics and payloads between devices, the fleetbridge bridge and integrators. JSON by default; "
                "MessagePack when the MQTT 5 content type says application/msgpack. Known metrics and their "
                "units and ranges: "
                + ", ".join(f"{n} ({s.unit}, {s.low:g}…{s.high:g})" for n, s in KNOWN_METRICS.items())
                + "."
            ),
        },
        "defaultContentType": "application/json",
        "channels": channels,
        "operations": operations,
        "components": {
            "schemas": dict(sorted(schemas.items())),
            "messages": dict(sorted(messages.items())),
            "parameters": {"deviceId": {"description": f"The device id, also its MQTT username: {DEVICE_ID_PATTERN}"}},
        },
    }


def render() -> str:
    """The document as the JSON text checked in at docs/asyncapi.json."""
    return msgspec.json.format(msgspec.json.encode(document()), indent=2).decode() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
