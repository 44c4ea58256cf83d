"""Routing of live updates to subscribed outboxes, and decoding of stream entries."""

from __future__ import annotations

from datetime import UTC, datetime

from api.live.hub import LiveHub
from api.live.outbox import Outbox
from api.live.stream import BadEntry, parse_entry, stream_entries
from api.live.update import LiveUpdate
from models.state import DeviceState, FieldValue, encode_field

TS = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def update(device_id: str) -> LiveUpdate:
    return LiveUpdate(device_id, DeviceState(device_id, TS, metrics={"fuel": FieldValue(1.0, TS, 1)}), "1-0")


def test_hub_delivers_to_named_and_wildcard_subscribers_once_each() -> None:
    hub = LiveHub()
    named, everything, both, other = Outbox(), Outbox(), Outbox(), Outbox()
    hub.subscribe(named, ["truck-1"])
    hub.subscribe_all(everything)
    hub.subscribe(both, ["truck-1"])
    hub.subscribe_all(both)
    hub.subscribe(other, ["truck-2"])

    hub.publish(update("truck-1"))

    assert named.pending_devices() == ["truck-1"]
    assert everything.pending_devices() == ["truck-1"]
    assert both.pending_devices() == ["truck-1"]
    assert both.conflated == 0
    assert other.pending_devices() == []


def test_hub_detach_removes_a_connection_everywhere() -> None:
    hub = LiveHub()
    outbox = Outbox()
    hub.subscribe(outbox, ["truck-1", "truck-2"])
    hub.subscribe_all(outbox)

    hub.detach(outbox, ["truck-1", "truck-2"])
    hub.publish(update("truck-1"))

    assert outbox.pending_devices() == []
    assert hub.connections == 0


def test_parse_entry_decodes_changed_fields_like_the_state_hash() -> None:
    fields = {
        b"d": b"truck-1",
        b"k": b"state",
        b"m.fuel": encode_field(1_764_000_000_000, 2, 17, b"44.5"),
        b"pos": encode_field(1_764_000_000_000, 2, 17, b'{"lat":1.5,"lon":2.5}'),
    }

    parsed = parse_entry("5-0", fields)

    assert isinstance(parsed, LiveUpdate)
    assert parsed.cursor == "5-0"
    assert parsed.changes.metrics["fuel"].value == 44.5
    assert parsed.changes.metrics["fuel"].boot == 2
    assert parsed.changes.position is not None
    assert parsed.changes.position.lon == 2.5


def test_parse_entry_reports_bad_entries_as_values() -> None:
    good_field = encode_field(1_764_000_000_000, 0, 1, b"1")

    assert isinstance(parse_entry("1-0", {b"d": b"a/b", b"k": b"state", b"m.x": good_field}), BadEntry)
    assert isinstance(parse_entry("1-0", {b"d": b"truck-1", b"k": b"state", b"m.x": b"junk"}), BadEntry)
    assert isinstance(parse_entry("1-0", {b"d": b"truck-1", b"k": b"state"}), BadEntry)


def test_parse_entry_ignores_kinds_it_does_not_serve() -> None:
    assert parse_entry("1-0", {b"d": b"truck-1", b"k": b"alert", b"rule": b"x"}) is None


def test_stream_entries_reads_resp2_replies_and_skips_deleted_entries() -> None:
    reply = [[b"fleet:live", [(b"1-0", {b"d": b"a"}), (b"2-0", None), (b"3-0", {b"d": b"b"})]]]

    assert [entry_id for entry_id, _ in stream_entries(reply)] == ["1-0", "3-0"]
    assert list(stream_entries(None)) == []
