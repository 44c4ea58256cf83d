"""The outbox: held while offline, tracked by packet id while in flight, settled exactly once."""

from __future__ import annotations

from firmware_sim.outbox import Outbox, OutboxEntry


def _entry(*seqs: int) -> OutboxEntry:
    return OutboxEntry(payload=b"x", keys=tuple((0, s) for s in seqs), readings=4 * len(seqs))


def test_outbox_settles_an_entry_by_its_packet_id() -> None:
    outbox = Outbox(100)
    entry = _entry(0, 1)
    outbox.hold(entry)
    assert outbox.take_held() == [entry]
    assert outbox.pending_samples == 2
    assert outbox.in_flight_messages == 1
    assert outbox.bind(entry, mid=7) is None
    settled = outbox.settle(7, failed=False)
    assert settled is not None
    assert settled.entry is entry
    assert not settled.failed
    assert not outbox
    assert outbox.settle(7, failed=False) is None, "a packet id settles once"


def test_outbox_accepts_an_ack_that_arrives_before_the_packet_id_is_bound() -> None:
    outbox = Outbox(100)
    entry = _entry(0)
    outbox.hold(entry)
    outbox.take_held()
    assert outbox.settle(3, failed=True) is None
    settled = outbox.bind(entry, mid=3)
    assert settled is not None
    assert settled.entry is entry
    assert settled.failed
    assert not outbox


def test_outbox_ignores_acks_of_untracked_messages_in_either_order() -> None:
    outbox = Outbox(100)
    outbox.bind_untracked(1)
    assert outbox.settle(1, failed=False) is None
    assert outbox.settle(2, failed=False) is None
    outbox.bind_untracked(2)
    entry = _entry(0)
    outbox.hold(entry)
    outbox.take_held()
    # Packet ids wrap around: a stale early ack must not settle a later message with the same id.
    assert outbox.bind(entry, mid=2) is None
    assert outbox.bind(_entry(1), mid=1) is None


def test_outbox_requeues_entries_in_front_and_in_order() -> None:
    outbox = Outbox(100)
    a, b, c = _entry(0), _entry(1), _entry(2)
    outbox.hold(a)
    outbox.hold(b)
    taken = outbox.take_held()
    outbox.hold(c)
    outbox.requeue(taken)
    assert outbox.take_held() == [a, b, c]


def test_outbox_drops_the_oldest_held_samples_when_full() -> None:
    outbox = Outbox(3)
    first, second, third = _entry(0, 1), _entry(2), _entry(3)
    assert outbox.hold(first) == []
    assert outbox.hold(second) == []
    assert outbox.hold(third) == [first]
    assert outbox.held_samples == 2
    big = _entry(4, 5, 6, 7)
    assert outbox.hold(big) == [second, third]
    assert outbox.take_held() == [big], "the newest entry is kept even when it alone overflows"


def test_outbox_counts_in_flight_samples_for_resending() -> None:
    outbox = Outbox(100)
    entries = [_entry(0, 1), _entry(2)]
    for e in entries:
        outbox.hold(e)
    for mid, e in enumerate(outbox.take_held(), start=1):
        outbox.bind(e, mid)
    outbox.hold(_entry(3))
    assert outbox.in_flight_samples == 3
    assert outbox.held_samples == 1
    assert outbox.pending_samples == 4
