"""The forwarder: live sends, batched backlogs, and resends of what `persisted` has not confirmed.

A memory store and a hand-driven clock (`now`, in seconds): no MQTT, no sleeps.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta

import msgspec
import pytest

from firmware_sim.forward import Forwarder
from firmware_sim.outbox import OutboxEntry
from firmware_sim.store import MemorySampleStore
from models.state import PersistedRange
from models.telemetry import Sample, TelemetryBatch

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
TIMEOUT_S = 10.0


def _samples(first: int, count: int) -> list[Sample]:
    return [Sample(seq=s, ts=T0 + timedelta(seconds=s), metrics={"fuel": 50.0}) for s in range(first, first + count)]


def _forwarder(max_samples: int = 1000, batch: int = 3) -> Forwarder:
    return Forwarder(MemorySampleStore(max_samples), persist_timeout_s=TIMEOUT_S, batch_max_samples=batch)


def _seqs(entries: list[OutboxEntry]) -> list[list[int]]:
    return [[seq for _, seq in e.keys] for e in entries]


def _send_acked(forwarder: Forwarder, count: int, *, acked_at: Callable[[int], float]) -> None:
    """Send samples 0…count-1 live, one message each, and acknowledge message i at `acked_at(i)`."""
    for seq in range(count):
        entry, _ = forwarder.append(_samples(seq, 1), send_now=True)
        assert entry is not None
        forwarder.acked(entry, now=acked_at(seq))


def _decoded(entry: OutboxEntry) -> list[Sample]:
    if entry.samples == 1:
        return [msgspec.json.decode(entry.payload, type=Sample)]
    return msgspec.json.decode(entry.payload, type=TelemetryBatch).samples


def test_forwarder_sends_a_live_group_at_once_as_one_message() -> None:
    forwarder = _forwarder()
    samples = _samples(0, 5)
    entry, dropped = forwarder.append(samples, send_now=True)
    assert entry is not None
    assert dropped == 0
    assert entry.payload == msgspec.json.encode(TelemetryBatch(samples=samples)), "exactly what msgspec would send"
    assert (entry.resend, entry.readings, entry.spans) == (False, 5, ((1, 5),))
    assert forwarder.unsent == 0
    assert forwarder.buffered == 5, "sent is not persisted: the store keeps them"
    single, _ = forwarder.append(_samples(5, 1), send_now=True)
    assert single is not None
    assert single.payload == msgspec.json.encode(_samples(5, 1)[0])


def test_forwarder_holds_samples_offline_and_sends_the_backlog_in_batches_with_original_times() -> None:
    forwarder = _forwarder(batch=3)
    for sample in _samples(0, 7):
        assert forwarder.append([sample], send_now=False) == (None, 0)
    assert forwarder.unsent == 7
    first = forwarder.take(0.0, messages=2)
    assert _seqs(first) == [[0, 1, 2], [3, 4, 5]], "no more messages than the window has room for"
    assert [s.ts for e in first for s in _decoded(e)] == [s.ts for s in _samples(0, 6)]
    assert _seqs(forwarder.take(0.0, messages=5)) == [[6]]
    assert forwarder.take(0.0, messages=5) == []
    assert forwarder.unsent == 0


def test_forwarder_keeps_live_samples_behind_an_older_backlog() -> None:
    forwarder = _forwarder()
    forwarder.append(_samples(0, 2), send_now=False)
    assert forwarder.append(_samples(2, 1), send_now=True) == (None, 0), "the backlog goes first"
    assert _seqs(forwarder.take(0.0, messages=5)) == [[0, 1, 2]]


def test_forwarder_resends_after_the_timeout_only_what_persisted_did_not_confirm() -> None:
    forwarder = _forwarder()
    entry, _ = forwarder.append(_samples(0, 3), send_now=True)
    assert entry is not None
    forwarder.acked(entry, now=0.0)
    assert forwarder.buffered == 3, "a PUBACK frees nothing"
    assert forwarder.confirm([PersistedRange(0, 1, 1)], now=1.0) == 1
    assert forwarder.take(TIMEOUT_S - 0.01, messages=5) == []
    assert forwarder.next_due_at() == TIMEOUT_S

    resent = forwarder.take(TIMEOUT_S, messages=5)
    assert _seqs(resent) == [[0, 2]]
    assert resent[0].resend
    assert [s.seq for s in _decoded(resent[0])] == [0, 2]
    forwarder.acked(resent[0], now=TIMEOUT_S)
    forwarder.confirm([PersistedRange(0, 0, 2)], now=TIMEOUT_S + 1)
    assert forwarder.buffered == 0
    assert forwarder.take(3 * TIMEOUT_S, messages=5) == [], "confirmed: nothing left to resend"
    assert forwarder.awaiting_messages == 0


def test_forwarder_probes_with_one_message_while_the_bridge_is_silent() -> None:
    forwarder = _forwarder()
    _send_acked(forwarder, 3, acked_at=float)
    # Nothing was ever confirmed: the bridge may be down. One probe, the rest wait another timeout.
    assert _seqs(forwarder.take(20.0, messages=5)) == [[0]]
    assert forwarder.awaiting_messages == 1, "the others wait together, their spans merged"
    assert forwarder.next_due_at() == 30.0
    assert forwarder.buffered == 3

    # The bridge answers again (for anything): what comes due is resent in full, merged up to the batch size.
    forwarder.confirm([PersistedRange(0, 0, 0)], now=25.0)
    assert forwarder.take(29.9, messages=5) == []
    resent = forwarder.take(30.0, messages=5)
    assert _seqs(resent) == [[1, 2]]
    assert resent[0].spans == ((2, 3),)


def test_forwarder_resends_everything_unconfirmed_at_once_after_a_reconnect() -> None:
    forwarder = _forwarder(batch=2)
    _send_acked(forwarder, 3, acked_at=lambda _: 0.0)
    assert forwarder.reconnected() == 3
    assert forwarder.awaiting_messages == 0
    resent = forwarder.take(0.0, messages=5)
    assert _seqs(resent) == [[0, 1], [2]]
    assert all(e.resend for e in resent)


def test_forwarder_sends_first_what_the_client_did_not_take() -> None:
    forwarder = _forwarder(batch=2)
    forwarder.append(_samples(0, 5), send_now=False)
    taken = forwarder.take(0.0, messages=3)
    assert _seqs(taken) == [[0, 1], [2, 3], [4]]
    for entry in reversed(taken[1:]):
        forwarder.not_taken(entry)
    again = forwarder.take(0.0, messages=5)
    assert _seqs(again) == [[2, 3], [4]]
    assert not any(e.resend for e in again), "never sent: a first send, not a resend"


def test_forwarder_counts_unsent_samples_dropped_or_confirmed_before_they_went_out() -> None:
    forwarder = _forwarder(max_samples=4)
    forwarder.append(_samples(0, 3), send_now=False)
    assert forwarder.append(_samples(3, 3), send_now=False) == (None, 2)
    assert forwarder.unsent == 4
    # A reply to a previous process, which had sent these before it stopped.
    assert forwarder.confirm([PersistedRange(0, 2, 3)], now=0.0) == 2
    assert forwarder.unsent == 2
    assert _seqs(forwarder.take(0.0, messages=5)) == [[4, 5]]


def test_forwarder_on_a_reopened_store_sends_everything_it_holds() -> None:
    store = MemorySampleStore(100)
    store.append(_samples(0, 4))
    forwarder = Forwarder(store, persist_timeout_s=TIMEOUT_S, batch_max_samples=10)
    assert forwarder.unsent == 4
    assert _seqs(forwarder.take(0.0, messages=1)) == [[0, 1, 2, 3]]


def test_forwarder_discards_refused_samples() -> None:
    forwarder = _forwarder()
    entry, _ = forwarder.append(_samples(0, 2), send_now=True)
    assert entry is not None
    assert forwarder.discard(entry.keys) == 2
    assert forwarder.buffered == 0


def test_forwarder_checks_its_settings() -> None:
    with pytest.raises(ValueError, match="persist_timeout_s"):
        Forwarder(MemorySampleStore(1), persist_timeout_s=0, batch_max_samples=1)
    with pytest.raises(ValueError, match="batch_max_samples"):
        Forwarder(MemorySampleStore(1), persist_timeout_s=1, batch_max_samples=0)


def test_forwarder_sends_one_probe_per_timeout_however_the_due_messages_are_spread() -> None:
    forwarder = _forwarder()
    _send_acked(forwarder, 4, acked_at=lambda seq: seq * 0.001)
    probes: list[list[int]] = []
    now = TIMEOUT_S
    while now < 4 * TIMEOUT_S:  # the forwarder wakes at each due time, here every millisecond
        for entry in forwarder.take(now, messages=5):
            probes.extend(_seqs([entry]))
            forwarder.acked(entry, now)
        now += 0.001
    assert probes == [[0], [0], [0]], "one sample per timeout: the oldest still held"
    assert forwarder.buffered == 4


def test_forwarder_splits_a_long_resend_into_batches_and_skips_what_was_confirmed() -> None:
    forwarder = _forwarder(batch=4)
    _send_acked(forwarder, 10, acked_at=lambda _: 0.0)
    forwarder.confirm([PersistedRange(0, 3, 4)], now=0.0)
    assert forwarder.reconnected() == 10
    assert forwarder.queued_messages == 1, "one group of merged spans"
    resent = forwarder.take(0.0, messages=2)
    assert _seqs(resent) == [[0, 1, 2, 5], [6, 7, 8, 9]]
    assert [e.spans for e in resent] == [((1, 6),), ((7, 10),)]
    assert forwarder.queued_messages == 0
