"""Events in the decode stage and in the bridge's replies: stored whole or refused whole, confirmed apart from samples."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec

from bridge.decode import decode_message
from bridge.fanout import persisted_messages, rejected_messages
from bridge.message import RawMessage
from models.state import Persisted, RejectedNotice
from models.telemetry import Limits

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def message(payload: object, kind: str = "events", device: str = "t1") -> RawMessage:
    data = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    return RawMessage(topic=f"fleet/v1/{device}/{kind}", payload=data, content_type=None, received_at=NOW)


def test_an_event_message_carries_one_event_and_no_rows() -> None:
    decoded = decode_message(
        message({"seq": 9, "ts": "2026-11-25T11:59:00Z", "name": "ignition", "boot": 1, "data": {"on": True}}),
        now=NOW,
        limits=Limits(),
    )
    assert decoded.device_id == "t1"
    assert [(e.name, e.boot, e.seq, e.data) for e in decoded.events] == [("ignition", 1, 9, {"on": True})]
    assert decoded.rows == []
    assert decoded.keys == []
    assert decoded.rejections == []
    assert decoded.stored
    assert not decoded.refused_whole


def test_a_malformed_event_is_refused_whole_for_the_dead_letter_table() -> None:
    decoded = decode_message(message(b'{"seq": 1, "name": "door"}'), now=NOW, limits=Limits())
    assert decoded.events == []
    assert not decoded.stored
    assert decoded.refused_whole
    (rejection,) = decoded.rejections
    assert rejection.topic == "fleet/v1/t1/events"
    assert rejection.device_id == "t1"
    assert rejection.index == -1
    assert "not a valid JSON event" in rejection.reason
    assert "`ts`" in rejection.reason
    (notice,) = rejected_messages([decoded])
    assert notice[0] == "fleet/v1/t1/rejected"
    assert msgspec.json.decode(notice[1], type=RejectedNotice).topic == "fleet/v1/t1/events"


def test_persisted_lists_events_apart_from_samples_of_the_same_seq() -> None:
    limits = Limits()
    sample = decode_message(message({"seq": 3, "ts": "2026-11-25T11:59:00Z"}, "telemetry"), now=NOW, limits=limits)
    events = [
        decode_message(message({"seq": seq, "ts": "2026-11-25T11:59:00Z", "name": "door"}), now=NOW, limits=limits)
        for seq in (3, 4, 4)
    ]
    only_events = decode_message(
        message({"seq": 1, "ts": "2026-11-25T11:59:00Z", "name": "door"}, device="t2"), now=NOW, limits=limits
    )
    replies = dict(persisted_messages([sample, *events, only_events], NOW))
    t1 = msgspec.json.decode(replies["fleet/v1/t1/persisted"], type=Persisted)
    assert [(r.boot, r.first, r.last) for r in t1.ranges] == [(0, 3, 3)]
    assert [(r.boot, r.first, r.last) for r in t1.events] == [(0, 3, 4)]
    t2 = msgspec.json.decode(replies["fleet/v1/t2/persisted"], type=Persisted)
    assert t2.ranges == []
    assert [(r.first, r.last) for r in t2.events] == [(1, 1)]


def test_persisted_without_events_keeps_its_former_shape() -> None:
    sample = decode_message(message({"seq": 3, "ts": "2026-11-25T11:59:00Z"}, "telemetry"), now=NOW, limits=Limits())
    ((_, payload),) = persisted_messages([sample], NOW)
    assert b"events" not in payload
