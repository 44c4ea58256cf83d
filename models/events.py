"""Device events, presence status and commands as they travel over MQTT, and the one validation of an event."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Final, Literal

import msgspec
from msgspec import Meta

from models.telemetry import Boot, Limits, MessageRejection, Seq, Timestamp, is_msgpack

EventName = Annotated[str, Meta(pattern=r"^[a-z][a-z0-9_]{0,63}$(?!\n)")]  # see MetricName


class Event(msgspec.Struct, frozen=True, kw_only=True):
    """A discrete event on `fleet/v1/{id}/events` (ignition, harsh braking, door, …)."""

    seq: Seq
    ts: Timestamp
    name: EventName
    boot: Boot = 0
    data: dict[str, Any] = {}


IGNITION: Final = "ignition"
"""The event a vehicle sends when its ignition turns on or off (`data.on`: true or false); trips are cut by it."""
# The key of the `events` table (migrations 0002, 0011): an event is (device, boot, seq), like a sample.
EVENT_KEY: Final = "(device_id, ts, boot, seq)"


class StoredEvent(msgspec.Struct, frozen=True, kw_only=True):
    """An event as stored: what the device sent and when the bridge received it (REST and live)."""

    seq: int
    ts: datetime
    boot: int
    name: str
    data: dict[str, Any]
    received_at: datetime


_JSON_EVENT = msgspec.json.Decoder(Event)
_MSGPACK_EVENT = msgspec.msgpack.Decoder(Event)
_json = msgspec.json.Encoder()


def decode_event(
    payload: bytes, *, content_type: str | None, now: datetime, limits: Limits
) -> Event | MessageRejection:
    """Decode and validate one event message; data errors come back as values, never raised.

    The same limits as telemetry: payload size, device time within the skew and the retention window,
    JSON or (by content type) MessagePack. One message is one event, refused whole or stored.
    """
    if len(payload) > limits.max_payload_bytes:
        return MessageRejection(f"payload of {len(payload)} bytes exceeds {limits.max_payload_bytes}")
    msgpack = is_msgpack(content_type)
    kind = "MessagePack" if msgpack else "JSON"
    try:
        event = (_MSGPACK_EVENT if msgpack else _JSON_EVENT).decode(payload)
    except msgspec.DecodeError as exc:
        return MessageRejection(f"not a valid {kind} event: {exc}")
    except RecursionError:
        return MessageRejection(f"not a valid {kind} event: nested too deeply")
    except UnicodeDecodeError as exc:
        return MessageRejection(f"not a valid {kind} event: invalid UTF-8 in a key: {exc}")
    if event.ts > now + limits.future_skew:
        return MessageRejection(f"timestamp {event.ts.isoformat()} is more than {limits.future_skew} in the future")
    if event.ts < now - limits.max_age:
        return MessageRejection(f"timestamp {event.ts.isoformat()} is older than the retention of {limits.max_age}")
    try:
        encoded = _json.encode(event.data)
    except (ValueError, TypeError, OverflowError) as exc:  # MessagePack extension types, integers past 64 bits
        return MessageRejection(f"event data cannot be stored as JSON: {exc}")
    if b"\\u0000" in encoded and _holds_nul(event.data):
        # PostgreSQL's jsonb has no NUL character: the database would refuse the row.
        return MessageRejection("event data holds a NUL character (\\u0000), which cannot be stored")
    return event


def _holds_nul(data: object) -> bool:
    """True when a NUL character is in any key or string of `data` (walked without recursion)."""
    pending = [data]
    while pending:
        item = pending.pop()
        if isinstance(item, str):
            if "\x00" in item:
                return True
        elif isinstance(item, dict):
            pending.extend(item.keys())
            pending.extend(item.values())
        elif isinstance(item, list):
            pending.extend(item)
    return False


def event_data_json(event: Event) -> str:
    """The event's `data` as JSON text for the `events.data` jsonb column (NaN and infinities become null)."""
    return _json.encode(event.data).decode()


class Status(msgspec.Struct, frozen=True, kw_only=True):
    """Retained presence on `fleet/v1/{id}/status`: `online` on connect, `offline` as the Last Will."""

    state: Literal["online", "offline"]
    ts: datetime | None = None
