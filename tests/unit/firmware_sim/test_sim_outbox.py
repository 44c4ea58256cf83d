"""The outbox: messages tracked by packet id from publish to PUBACK, settled exactly once."""

from __future__ import annotations

from firmware_sim.outbox import Outbox, OutboxEntry


def _entry(*seqs: int) -> OutboxEntry:
    return OutboxEntry(payload=b"x", keys=tuple((0, s) for s in seqs), readings=4 * len(seqs))


def test_outbox_settles_an_entry_by_its_packet_id() -> None:
    outbox = Outbox()
    entry = _entry(0, 1)
    outbox.start([entry])
    assert outbox.in_flight_samples == 2
    assert outbox.in_flight_messages == 1
    assert outbox.bind(entry, mid=7) is None
    assert outbox.in_flight_samples == 2
    settled = outbox.settle(7, failed=False)
    assert settled is not None
    assert settled.entry is entry
    assert not settled.failed
    assert not outbox
    assert outbox.settle(7, failed=False) is None, "a packet id settles once"


def test_outbox_accepts_an_ack_that_arrives_before_the_packet_id_is_bound() -> None:
    outbox = Outbox()
    entry = _entry(0)
    outbox.start([entry])
    assert outbox.settle(3, failed=True) is None
    settled = outbox.bind(entry, mid=3)
    assert settled is not None
    assert settled.entry is entry
    assert settled.failed
    assert not outbox


def test_outbox_ignores_acks_of_untracked_messages_in_either_order() -> None:
    outbox = Outbox()
    outbox.bind_untracked(1)
    assert outbox.settle(1, failed=False) is None
    assert outbox.settle(2, failed=False) is None
    outbox.bind_untracked(2)
    entry = _entry(0)
    outbox.start([entry])
    # Packet ids wrap around: a stale early ack must not settle a later message with the same id.
    assert outbox.bind(entry, mid=2) is None
    assert outbox.bind(_entry(1), mid=1) is None


def test_outbox_forgets_an_entry_the_client_did_not_take() -> None:
    outbox = Outbox()
    taken, refused = _entry(0), _entry(1, 2)
    outbox.start([taken, refused])
    assert (outbox.in_flight_messages, outbox.in_flight_samples) == (2, 3)
    outbox.abandon(refused)
    outbox.abandon(refused)
    assert (outbox.in_flight_messages, outbox.in_flight_samples) == (1, 1)
    outbox.bind(taken, mid=5)
    assert outbox.settle(5, failed=False) is not None
    assert not outbox
