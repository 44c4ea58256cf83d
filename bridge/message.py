"""The bridge's own message type: the MQTT library's message is wrapped at the edge."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True, slots=True)
class RawMessage:
    """One message as received from the broker, before decoding."""

    topic: str
    payload: bytes
    content_type: str | None
    received_at: datetime
    dup: bool = False
    retain: bool = False  # a retained message replayed by the broker on subscribe
    generation: int = 0  # which connection delivered it; its acknowledgement can go only there


@dataclass(frozen=True, slots=True)
class Acknowledgement:
    """What the bridge answers the broker for one message: an MQTT 5 PUBACK reason code and, for a
    refusal, a reason string (MQTT 5 only; an MQTT 3.1.1 PUBACK has room for neither)."""

    code: int = 0
    reason: str | None = None
