"""The simulator's events: numbered by device time, resent until confirmed, freed by `persisted.events` or a
refusal; and the truck's ignition and harsh-braking events."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime, timedelta

import msgspec

from firmware_sim.events import EventOutbox
from firmware_sim.truck import HARSH_BRAKING, HARSH_BRAKING_MS2, Truck
from models.events import IGNITION, Event, decode_event
from models.state import PersistedRange
from models.telemetry import Limits

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)


def test_events_are_numbered_by_device_time_strictly_increasing() -> None:
    outbox = EventOutbox(persist_timeout_s=10)
    first = outbox.add(boot=2, ts=T0, name="door", data={})
    same_instant = outbox.add(boot=2, ts=T0, name="door", data={})
    later = outbox.add(boot=2, ts=T0 + timedelta(seconds=1), name="door", data={})
    assert first.seq == int(T0.timestamp() * 1000)
    assert same_instant.seq == first.seq + 1
    assert later.seq == first.seq + 1000
    assert len(outbox) == 3


def test_an_event_is_resent_after_the_timeout_and_on_reconnect_until_confirmed() -> None:
    outbox = EventOutbox(persist_timeout_s=10)
    event = outbox.add(boot=1, ts=T0, name=IGNITION, data={"on": True})
    (payload,) = outbox.due(now=0.0)
    assert msgspec.json.decode(payload, type=Event) == event
    assert outbox.due(now=9.0) == []
    assert outbox.next_due_at() == 10.0
    assert outbox.due(now=10.0) == [payload]
    outbox.reconnected()
    assert outbox.due(now=11.0) == [payload]
    assert outbox.confirm([PersistedRange(0, event.seq, event.seq)]) == 0  # another boot: not this one
    assert outbox.confirm([PersistedRange(1, event.seq - 5, event.seq + 5)]) == 1
    assert len(outbox) == 0
    assert outbox.due(now=100.0) == []


def test_a_refusal_frees_the_event_with_that_payload_digest() -> None:
    outbox = EventOutbox(persist_timeout_s=10)
    outbox.add(boot=1, ts=T0, name="door", data={})
    (payload,) = outbox.due(now=0.0)
    assert not outbox.refuse(hashlib.sha256(b"something else").hexdigest())
    assert outbox.refuse(hashlib.sha256(payload).hexdigest())
    assert len(outbox) == 0
    assert outbox.refused == 1


def test_the_outbox_is_bounded_dropping_the_oldest() -> None:
    outbox = EventOutbox(persist_timeout_s=10, max_events=2)
    for n in range(3):
        outbox.add(boot=0, ts=T0 + timedelta(seconds=n), name="door", data={})
    assert len(outbox) == 2
    assert outbox.dropped == 1


def test_a_truck_turns_its_ignition_on_at_its_first_step_and_off_when_parked() -> None:
    truck = Truck("truck-0001", seed=7)
    truck.step(T0, 1.0)
    assert [(e.name, e.ts, e.data) for e in truck.take_events()] == [(IGNITION, T0, {"on": True})]
    assert truck.take_events() == []
    parked = truck.ignition_off(T0 + timedelta(seconds=5))
    assert parked is not None
    assert (parked.name, parked.data) == (IGNITION, {"on": False})
    assert truck.ignition_off(T0 + timedelta(seconds=6)) is None  # already off


def test_a_driving_truck_brakes_harshly_now_and_then_and_its_events_pass_validation() -> None:
    truck = Truck("truck-0002", seed=7)
    outbox = EventOutbox(persist_timeout_s=10)
    names: list[str] = []
    for n in range(3600):
        now = T0 + timedelta(seconds=n)
        truck.step(now, 1.0)
        for event in truck.take_events():
            names.append(event.name)
            if event.name == HARSH_BRAKING:
                assert event.data["decel_ms2"] >= HARSH_BRAKING_MS2
            payload = msgspec.json.encode(outbox.add(boot=0, ts=event.ts, name=event.name, data=event.data))
            assert isinstance(decode_event(payload, content_type=None, now=now, limits=Limits()), Event)
    assert names[0] == IGNITION
    assert 1 <= names.count(HARSH_BRAKING) < 600  # now and then, not at every light
