"""Decoding and validating one device event (`models.events.decode_event`)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from models.events import Event, decode_event
from models.telemetry import Limits, MessageRejection

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LIMITS = Limits()


def decode(payload: object, content_type: str | None = None) -> Event | MessageRejection:
    data = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    return decode_event(data, content_type=content_type, now=NOW, limits=LIMITS)


def test_a_valid_event_decodes_with_its_defaults() -> None:
    event = decode({"seq": 5, "ts": "2026-11-25T11:59:00Z", "name": "ignition", "data": {"on": True}})
    assert event == Event(seq=5, ts=datetime(2026, 11, 25, 11, 59, tzinfo=UTC), name="ignition", data={"on": True})
    assert isinstance(event, Event)
    assert event.boot == 0


def test_messagepack_is_read_by_content_type() -> None:
    payload = msgspec.msgpack.encode({"seq": 1, "ts": "2026-11-25T11:59:00Z", "name": "door", "boot": 2})
    event = decode(payload, "application/msgpack; charset=binary")
    assert isinstance(event, Event)
    assert (event.name, event.boot) == ("door", 2)


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "not a valid JSON event: JSON is malformed"),
        (b"[1,2]", "not a valid JSON event: Expected `object`"),
        ({"seq": 1, "ts": "2026-11-25T11:59:00Z"}, "missing required field `name`"),
        ({"seq": 1, "ts": "2026-11-25T11:59:00Z", "name": "Harsh Braking"}, "at `$.name`"),
        ({"seq": 1, "ts": "2026-11-25T11:59:00Z", "name": "ignition\n"}, "at `$.name`"),
        ({"seq": -1, "ts": "2026-11-25T11:59:00Z", "name": "door"}, "at `$.seq`"),
        ({"seq": 1, "ts": "2026-11-25T11:59:00", "name": "door"}, "at `$.ts`"),
        ({"seq": 1, "ts": "2026-11-25T11:59:00Z", "name": "door", "data": []}, "at `$.data`"),
        ({"seq": 1, "ts": "2026-11-25T13:00:00Z", "name": "door"}, "in the future"),
        ({"seq": 1, "ts": "2026-09-01T00:00:00Z", "name": "door"}, "older than the retention"),
        ({"seq": 1, "ts": "2026-11-25T11:59:00Z", "name": "door", "data": {"a\u0000": 1}}, "NUL character"),
        ({"seq": 1, "ts": "2026-11-25T11:59:00Z", "name": "door", "data": {"a": ["\u0000"]}}, "NUL character"),
        (b'{"seq":1,"ts":"2026-11-25T11:59:00Z","name":"door","data":{"x":' + b"[" * 100_000, "nested too deeply"),
    ],
)
def test_a_bad_event_is_refused_with_its_reason(payload: object, reason: str) -> None:
    refused = decode(payload)
    assert isinstance(refused, MessageRejection)
    assert reason in refused.reason


def test_the_payload_limit_applies() -> None:
    big = {"seq": 1, "ts": "2026-11-25T11:59:00Z", "name": "door", "data": {"x": "y" * LIMITS.max_payload_bytes}}
    refused = decode(big)
    assert isinstance(refused, MessageRejection)
    assert "exceeds" in refused.reason


def test_a_backslash_u_text_that_is_no_nul_is_kept() -> None:
    event = decode({"seq": 1, "ts": "2026-11-25T11:59:00Z", "name": "door", "data": {"note": "\\u0000"}})
    assert isinstance(event, Event)
    assert event.data == {"note": "\\u0000"}


def test_the_skew_is_the_telemetry_one() -> None:
    edge = (NOW + LIMITS.future_skew - timedelta(seconds=1)).isoformat()
    assert isinstance(decode({"seq": 1, "ts": edge, "name": "door"}), Event)
