"""An ingest request's body cut into the telemetry messages it carries, within the request's bounds.

Three forms, chosen by `Content-Type`: one JSON message (`application/json`), one MessagePack message
(the MQTT content types of models/telemetry.py), or NDJSON (`application/x-ndjson`): one JSON message a
line, blank lines skipped (a trailing newline is not a message), `\\r\\n` accepted. A line is not parsed
here: each message goes to the bridge as it came, and a malformed one is refused there, alone, as over
MQTT. Only what would hurt the API's broker connection is refused here, whole: a message larger than
the broker takes.

Data errors are values (`BodyRefusal`), for the controller to turn into problem responses.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final, Literal

from models.telemetry import MSGPACK_CONTENT_TYPES, is_msgpack

NDJSON: Final = "application/x-ndjson"
JSON: Final = "application/json"
ACCEPTED_TYPES: Final = (JSON, NDJSON, *sorted(MSGPACK_CONTENT_TYPES))
# mosquitto.conf's max_packet_size is 1 MiB, and the broker drops the connection of a client that sends
# more: one oversized message would cut off every request this instance is forwarding. The rest of the
# packet (topic, properties) fits in the difference.
MAX_MESSAGE_BYTES: Final = 1_000_000


@dataclass(frozen=True, slots=True)
class Message:
    """One telemetry message to forward: its bytes, its MQTT content type, and its line in the body."""

    line: int
    payload: bytes
    content_type: str | None


@dataclass(frozen=True, slots=True)
class BodyRefusal:
    """Why the body as a whole is refused: `kind` picks the HTTP status."""

    kind: Literal["too_large", "unsupported_type", "empty"]
    detail: str


async def read_limited(chunks: AsyncIterator[bytes], max_bytes: int) -> bytes | BodyRefusal:
    """The whole body, or a refusal as soon as it grows past `max_bytes` (the rest is not read)."""
    parts: list[bytes] = []
    size = 0
    async for chunk in chunks:
        size += len(chunk)
        if size > max_bytes:
            return BodyRefusal("too_large", f"the body exceeds {max_bytes} bytes; send fewer messages per request")
        parts.append(chunk)
    return b"".join(parts)


def split_messages(body: bytes, content_type: str | None, *, max_messages: int) -> list[Message] | BodyRefusal:
    """The messages of `body`, by its content type; a refusal for a body that cannot be forwarded."""
    media = (content_type or "").split(";")[0].strip().lower()
    if media == NDJSON:
        messages = _lines(body, max_messages)
    elif media == JSON:
        messages = [Message(1, body, None)]
    elif is_msgpack(media):
        messages = [Message(1, body, media)]
    else:
        return BodyRefusal("unsupported_type", f"Content-Type must be one of {', '.join(ACCEPTED_TYPES)}")
    if isinstance(messages, BodyRefusal):
        return messages
    if not messages or (len(messages) == 1 and not messages[0].payload.strip()):
        return BodyRefusal("empty", "the body holds no message")
    for message in messages:
        if len(message.payload) > MAX_MESSAGE_BYTES:
            return BodyRefusal(
                "too_large",
                f"the message on line {message.line} exceeds {MAX_MESSAGE_BYTES} bytes, more than the broker takes",
            )
    return messages


def _lines(body: bytes, max_messages: int) -> list[Message] | BodyRefusal:
    messages: list[Message] = []
    for number, line in enumerate(body.split(b"\n"), start=1):
        payload = line.removesuffix(b"\r")
        if not payload.strip():
            continue
        if len(messages) == max_messages:
            return BodyRefusal("too_large", f"more than {max_messages} messages in one request; split the upload")
        messages.append(Message(number, payload, None))
    return messages
