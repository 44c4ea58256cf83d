"""Routing of live updates to the connections whose selection matches, and decoding of stream entries."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import msgspec

from api.live.cursor import StreamId
from api.live.directory import GroupDirectory
from api.live.event import LiveEvent
from api.live.hub import LiveHub, Subscriber
from api.live.outbox import Outbox
from api.live.selection import BBox, Selection
from api.live.stream import BadEntry, parse_entry, stream_entries
from api.live.update import LiveUpdate
from models.events import StoredEvent
from models.state import DeviceState, FieldValue, PositionState, encode_field

TS = datetime(2026, 11, 25, 10, 0, tzinfo=UTC)


def update(device_id: str, cursor: str = "1-0", kind: str = "state") -> LiveUpdate:
    return LiveUpdate(device_id, DeviceState(device_id, TS, metrics={"fuel": FieldValue(1.0, TS, 1)}), cursor, kind)


def moved(device_id: str, lon: float, lat: float, cursor: str) -> LiveUpdate:
    return LiveUpdate(device_id, DeviceState(device_id, TS, position=PositionState(lat, lon, TS, 1)), cursor)


class FixedGroups(GroupDirectory):
    """The directory with a map given by the test instead of read from PostgreSQL."""

    def __init__(self, groups: dict[str, str]) -> None:
        pool: Any = None
        super().__init__(pool, refresh_s=60)
        self._group_of = dict(groups)
        self._members = {}
        for device_id, group in groups.items():
            self._members.setdefault(group, set()).add(device_id)


def subscriber(hub: LiveHub, selection: Selection, group_limit: str | None = None) -> Subscriber:
    found = Subscriber(Outbox(), group_limit, selection)
    hub.attach(found)
    return found


def test_hub_delivers_by_device_group_and_everything_once_each() -> None:
    hub = LiveHub(FixedGroups({"truck-1": "north", "truck-2": "south"}))
    named = subscriber(hub, Selection(devices={"truck-1"}))
    everything = subscriber(hub, Selection(everything=True))
    both = subscriber(hub, Selection(everything=True, devices={"truck-1"}, groups={"north"}))
    north = subscriber(hub, Selection(groups={"north"}))
    other = subscriber(hub, Selection(devices={"truck-2"}))

    hub.publish(update("truck-1"))

    assert named.outbox.pending_devices() == ["truck-1"]
    assert everything.outbox.pending_devices() == ["truck-1"]
    assert both.outbox.pending_devices() == ["truck-1"]
    assert both.outbox.conflated == 0
    assert north.outbox.pending_devices() == ["truck-1"]
    assert other.outbox.pending_devices() == []


def test_hub_never_delivers_outside_a_group_limit_whatever_was_selected() -> None:
    hub = LiveHub(FixedGroups({"truck-n": "north", "truck-s": "south"}))
    limited = subscriber(hub, Selection(everything=True, devices={"truck-s"}, groups={"south"}), group_limit="north")

    for device_id in ("truck-s", "truck-x", "truck-n"):
        hub.publish(update(device_id))

    assert limited.outbox.pending_devices() == ["truck-n"]


async def test_hub_follows_devices_into_and_out_of_a_box() -> None:
    hub = LiveHub(FixedGroups({}))
    box = subscriber(hub, Selection(boxes={BBox(13.0, 52.0, 14.0, 53.0): {"truck-in"}}))

    hub.publish(update("truck-in", "1-0"))  # inside at subscribe time: its readings match
    hub.publish(update("truck-out", "2-0"))  # never inside
    hub.publish(moved("truck-out", 13.5, 52.5, "3-0"))  # moves in
    hub.publish(update("truck-out", "4-0", kind="correction"))
    hub.publish(moved("truck-in", 20.0, 52.5, "5-0"))  # moves out: the client sees it leave
    hub.publish(update("truck-in", "6-0"))  # outside now

    sent = {(u.device_id, u.kind): u.cursor for u, _ in (await box.outbox.take()).updates}
    assert sent == {("truck-in", "state"): "5-0", ("truck-out", "state"): "3-0", ("truck-out", "correction"): "4-0"}


def test_hub_skips_what_a_resumed_client_already_has() -> None:
    hub = LiveHub(FixedGroups({}))
    resumed = subscriber(hub, Selection(devices={"truck-1"}))
    resumed.floor = StreamId(5, 0)

    hub.publish(update("truck-1", "5-0"))
    assert resumed.outbox.pending_devices() == []
    hub.publish(update("truck-1", "6-0"))
    assert resumed.outbox.pending_devices() == ["truck-1"]


def test_hub_detach_removes_a_connection_everywhere() -> None:
    hub = LiveHub(FixedGroups({"truck-1": "north"}))
    found = subscriber(hub, Selection(everything=True, devices={"truck-1", "truck-2"}, groups={"north"}))

    hub.detach(found)
    hub.publish(update("truck-1"))

    assert found.outbox.pending_devices() == []
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
    assert parsed.first == parsed.last == StreamId(5, 0)
    assert parsed.changes.metrics["fuel"].value == 44.5
    assert parsed.changes.metrics["fuel"].boot == 2
    assert parsed.changes.position is not None
    assert parsed.changes.position.lon == 2.5


def test_parse_entry_keeps_the_kind_of_corrections_and_presence() -> None:
    late = parse_entry("7-1", {b"d": b"truck-1", b"k": b"correction", b"m.fuel": encode_field(1, 0, 3, b"9.5")})
    presence = encode_field(1, 0, 0, b'{"state":"offline","source":"heartbeat","since":"2026-11-25T10:00:00Z"}')
    offline = parse_entry("7-2", {b"d": b"truck-1", b"k": b"presence", b"presence": presence})

    assert isinstance(late, LiveUpdate)
    assert late.kind == "correction"
    assert '"type":"correction"' in late.message()
    assert isinstance(offline, LiveUpdate)
    assert offline.kind == "presence"
    assert offline.message().startswith('{"type":"presence","device_id":"truck-1","presence":{"state":"offline"')


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


def live_event(device_id: str, cursor: str) -> LiveEvent:
    stored = StoredEvent(seq=1, ts=TS, boot=0, name="ignition", data={"on": True}, received_at=TS)
    return LiveEvent(device_id, stored, cursor)


def test_hub_queues_every_event_of_a_selected_device_unconflated_and_skips_what_a_resume_had() -> None:
    hub = LiveHub(FixedGroups({"truck-1": "north", "truck-2": "south"}))
    north = subscriber(hub, Selection(groups={"north"}))
    resumed = subscriber(hub, Selection(devices={"truck-1"}))
    resumed.floor = StreamId(2, 0)
    limited = subscriber(hub, Selection(everything=True), group_limit="south")

    for cursor in ("1-0", "2-0", "3-0"):
        hub.publish_event(live_event("truck-1", cursor))

    def received(found: Subscriber) -> int:
        return len(found.outbox._control)

    assert received(north) == 3
    assert received(resumed) == 1  # entries 1-0 and 2-0 were replayed to it
    assert received(limited) == 0
    message = json.loads(north.outbox._control[0])
    assert message["type"] == "event"
    assert message["device_id"] == "truck-1"
    assert message["event"]["name"] == "ignition"
    assert message["event"]["data"] == {"on": True}


async def test_outbox_holds_events_behind_a_replay_and_overflows_when_too_many_wait() -> None:
    outbox = Outbox(max_queued=3)
    outbox.hold()
    outbox.push(b"replayed")
    outbox.queue(b"live")
    assert (await outbox.take()).control == [b"replayed"]
    outbox.sent()
    outbox.release()
    assert (await outbox.take()).control == [b"live"]
    outbox.sent()
    for n in range(3):
        outbox.queue(b"%d" % n)
    assert not outbox.overflowed
    outbox.queue(b"one too many")
    assert outbox.overflowed


def test_an_event_entry_parses_and_a_broken_one_is_a_bad_entry() -> None:
    stored = StoredEvent(seq=1, ts=TS, boot=0, name="door", data={}, received_at=TS)
    parsed = parse_entry("5-0", {b"d": b"truck-1", b"k": b"event", b"e": msgspec.json.encode(stored)})
    assert isinstance(parsed, LiveEvent)
    assert parsed.event == stored
    assert parsed.cursor == "5-0"
    assert isinstance(parse_entry("6-0", {b"d": b"truck-1", b"k": b"event", b"e": b"{}"}), BadEntry)
