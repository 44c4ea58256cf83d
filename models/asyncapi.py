"""The AsyncAPI 3.0 document of every MQTT topic, generated from the msgspec types the code uses.

`python -m models.asyncapi > docs/asyncapi.json` regenerates the checked-in copy; a test fails when the
two drift apart, and the API serves the generated document.
"""

from __future__ import annotations

import inspect
import sys
import typing
from dataclasses import dataclass
from typing import Any, Final

import msgspec

from models.commands import CommandAck, CommandMessage
from models.events import Event, Status
from models.firmware import OtaProgress
from models.rules import AlertNotice
from models.state import DeviceState, Persisted, RejectedNotice
from models.telemetry import KNOWN_METRICS, Sample, SensorReading, TelemetryBatch
from models.topics import DEVICE_ID_PATTERN, PREFIX, TopicKind
from models.twin import DesiredConfig, ReportedConfig

VERSION: Final = "1.0.0"


@dataclass(frozen=True, slots=True)
class PlainText:
    """A payload that is one bare word rather than a JSON document (`online` on `status`).

    Small firmware sets its Last Will once, at connect time, and many SDKs make that a fixed string:
    the plain form is as much a part of the contract as the JSON one, so the document names both.
    """

    name: str
    words: tuple[str, ...]
    description: str

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the payload: a string that is exactly one of the words."""
        return {"type": "string", "enum": list(self.words), "description": self.description}


# The words come from the JSON form's own type, so the two forms cannot list different states.
STATUS_TEXT: Final = PlainText(
    "StatusText",
    typing.get_args(typing.get_type_hints(Status)["state"]),
    "The bare word, without quotes or JSON: what a Last Will set once at connect time usually carries.",
)


@dataclass(frozen=True, slots=True)
class ArrayOf:
    """A payload that is a JSON array of one Struct type (field sensors send readings in arrays)."""

    name: str
    item: type[msgspec.Struct]
    description: str

    def schema(self) -> dict[str, Any]:
        """The JSON Schema of the payload: an array of the item's component."""
        return {
            "type": "array",
            "minItems": 1,
            "items": {"$ref": f"#/components/schemas/{self.item.__name__}"},
            "description": self.description,
        }


SENSOR_READINGS: Final = ArrayOf(
    "SensorReadings", SensorReading, "Several field-sensor readings or aggregates of one device in one message."
)

Payload = type[msgspec.Struct] | PlainText | ArrayOf


@dataclass(frozen=True, slots=True)
class Channel:
    """One topic of the v1 grammar and what flows on it."""

    kind: TopicKind
    action: str  # "send": the application (bridge/API) sends; "receive": it receives from devices
    payloads: tuple[Payload, ...]
    summary: str
    qos: int
    retained: bool = False


CHANNELS: Final = (
    Channel(
        TopicKind.TELEMETRY,
        "receive",
        (Sample, TelemetryBatch, SensorReading, SENSOR_READINGS),
        "Samples from a device: one, or a batch; or field-sensor readings: one, or an array.",
        1,
    ),
    Channel(
        TopicKind.EVENTS,
        "receive",
        (Event,),
        "Discrete events (ignition, harsh braking, door): one per message, stored once by (boot, seq).",
        1,
    ),
    Channel(
        TopicKind.STATUS,
        "receive",
        (Status, STATUS_TEXT),
        "Presence: `online` on connect, `offline` as Last Will; JSON or the bare word.",
        1,
        True,
    ),
    Channel(
        TopicKind.CMD,
        "send",
        (CommandMessage,),
        "A command to the device: obeyed once per id, never after `expires_at`.",
        1,
    ),
    Channel(
        TopicKind.CMD_ACK,
        "receive",
        (CommandAck,),
        "The device's answers to a command: received, then succeeded or failed.",
        1,
    ),
    Channel(
        TopicKind.OTA,
        "receive",
        (OtaProgress,),
        "The device's progress with a firmware update: downloading, verifying, installing, running, or failed.",
        1,
    ),
    Channel(
        TopicKind.PERSISTED,
        "send",
        (Persisted,),
        "Seq ranges just committed (samples; events apart): the device may free them.",
        0,
    ),
    Channel(TopicKind.REJECTED, "send", (RejectedNotice,), "Why a message or sample was refused.", 0),
    Channel(TopicKind.STATE, "send", (DeviceState,), "Normalised last-known state, for integrators.", 0, True),
    Channel(TopicKind.ALERTS, "send", (AlertNotice,), "Alert changes from the rules engine, for integrators.", 1),
    Channel(
        TopicKind.CONFIG,
        "send",
        (DesiredConfig,),
        "The device twin's desired configuration, retained: the latest version only. Apply a higher version only.",
        1,
        True,
    ),
    Channel(
        TopicKind.CONFIG_REPORTED,
        "receive",
        (ReportedConfig,),
        "What the device applied and from which version, retained by the device.",
        1,
        True,
    ),
)


def document() -> dict[str, Any]:
    """The AsyncAPI document as a JSON-ready dict (stable ordering, so the checked-in copy can be diffed)."""
    types = sorted({t for c in CHANNELS for t in c.payloads if isinstance(t, type)}, key=lambda t: t.__name__)
    types += [t.item for c in CHANNELS for t in c.payloads if isinstance(t, ArrayOf) and t.item not in types]
    _, schemas = msgspec.json.schema_components(types, ref_template="#/components/schemas/{name}")
    for schema in schemas.values():
        # msgspec releases differ on whether they dedent docstrings: normalise, so the document depends on
        # the code alone.
        if isinstance(schema.get("description"), str):
            schema["description"] = inspect.cleandoc(schema["description"])
    schemas.update({t.name: t.schema() for c in CHANNELS for t in c.payloads if isinstance(t, PlainText | ArrayOf)})
    channels: dict[str, Any] = {}
    operations: dict[str, Any] = {}
    messages: dict[str, Any] = {}
    for channel in CHANNELS:
        name = channel.kind.value.replace("/", "_")
        channel_messages = {}
        for payload in channel.payloads:
            payload_name = payload_name_of(payload)
            message_name = f"{name}_{payload_name}"
            messages[message_name] = {
                "name": payload_name,
                "contentType": "text/plain" if isinstance(payload, PlainText) else "application/json",
                "payload": {"$ref": f"#/components/schemas/{payload_name}"},
                "bindings": {"mqtt": {"qos": channel.qos, "retain": channel.retained}},
            }
            channel_messages[payload_name] = {"$ref": f"#/components/messages/{message_name}"}
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
                "MessagePack when the MQTT 5 content type says application/msgpack. Device time is RFC 3339 text "
                "or an integer of Unix epoch milliseconds. Known metrics and their "
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


def payload_name_of(payload: Payload) -> str:
    """The component name of a payload: its type's name, or the plain-text form's own."""
    return payload.name if isinstance(payload, PlainText | ArrayOf) else payload.__name__


def render() -> str:
    """The document as the JSON text checked in at docs/asyncapi.json."""
    return msgspec.json.format(msgspec.json.encode(document()), indent=2).decode() + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
