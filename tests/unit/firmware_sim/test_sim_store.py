"""The sample store: one contract for the memory and the SQLite store, plus what only a file can do.

The contract: samples come back in the order stored, leave only when confirmed, discarded or pushed
out at the bound (oldest first, counted), positions are never reused, and `next_seq` follows the
current boot. The SQLite store also keeps all of that, boot and seq included, across a reopen.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_sim.errors import StoreError
from firmware_sim.store import MemorySampleStore, SampleStore, SqliteSampleStore, new_boot, open_store, store_path
from models.state import PersistedRange
from models.telemetry import Position, Sample

T0 = datetime(2026, 11, 25, 8, 0, tzinfo=UTC)
StoreFactory = Callable[[int], SampleStore]


def _sample(seq: int, boot: int = 0, ts: datetime | None = None) -> Sample:
    return Sample(
        seq=seq,
        ts=ts or T0 + timedelta(seconds=seq, microseconds=seq),
        boot=boot,
        pos=Position(lat=52.5, lon=13.4),
        metrics={"fuel": 50.0},
    )


def _seqs(store: SampleStore) -> list[int]:
    return [r.seq for r in store.read_after(0, 1_000_000)]


@pytest.fixture(params=["memory", "sqlite"])
def make_store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StoreFactory]:
    """Fresh stores of one kind (boot 0 for both, so the contract can name seqs), closed at teardown."""
    made: list[SampleStore] = []

    def make(max_samples: int) -> SampleStore:
        store: SampleStore
        if request.param == "memory":
            store = MemorySampleStore(max_samples)
        else:
            store = SqliteSampleStore(tmp_path / f"d{len(made)}.sqlite", max_samples)
        made.append(store)
        return store

    yield make
    for store in made:
        store.close()


def test_store_returns_samples_in_order_with_their_original_json(make_store: StoreFactory) -> None:
    store = make_store(100)
    samples = [_sample(seq, store.boot) for seq in range(5)]
    appended = store.append(samples)
    assert [r.pos for r in appended.records] == [1, 2, 3, 4, 5]
    assert appended.dropped == []
    assert len(store) == 5
    records = store.read_after(0, 100)
    assert [msgspec.json.decode(r.payload, type=Sample) for r in records] == samples
    assert [(r.boot, r.seq, r.ts, r.readings) for r in records] == [(s.boot, s.seq, s.ts, 2) for s in samples]
    assert [r.seq for r in store.read_after(2, 2)] == [2, 3]
    assert [r.seq for r in store.read_span(2, 4)] == [1, 2, 3]
    assert store.oldest_ts() == samples[0].ts


def test_store_frees_only_confirmed_ranges_and_reports_their_positions(make_store: StoreFactory) -> None:
    store = make_store(100)
    boot = store.boot
    store.append([_sample(seq, boot) for seq in range(10)])
    freed = store.confirm([PersistedRange(boot, 2, 4), PersistedRange(boot, 8, 20), PersistedRange(boot + 1, 0, 9)])
    assert sorted(freed) == [3, 4, 5, 9, 10]
    assert _seqs(store) == [0, 1, 5, 6, 7]
    assert store.confirm([PersistedRange(boot, 2, 4)]) == [], "a repeated confirmation frees nothing"
    assert store.discard([(boot, 6), (boot, 99)]) == [7]
    assert _seqs(store) == [0, 1, 5, 7]
    assert store.read_span(3, 7) == [store.read_after(2, 1)[0]]
    assert len(store) == 4


def test_store_drops_the_oldest_at_its_bound(make_store: StoreFactory) -> None:
    store = make_store(3)
    boot = store.boot
    assert store.append([_sample(0, boot), _sample(1, boot)]).dropped == []
    assert store.append([_sample(2, boot), _sample(3, boot)]).dropped == [1]
    assert _seqs(store) == [1, 2, 3]
    big = store.append([_sample(seq, boot) for seq in range(4, 9)])
    assert big.dropped == [2, 3, 4, 5, 6], "an append larger than the store keeps only its newest"
    assert _seqs(store) == [6, 7, 8]
    assert store.oldest_ts() == _sample(6).ts


def test_store_never_reuses_a_position_after_freeing_everything(make_store: StoreFactory) -> None:
    store = make_store(10)
    store.append([_sample(0, store.boot), _sample(1, store.boot)])
    store.confirm([PersistedRange(store.boot, 0, 1)])
    assert len(store) == 0
    assert store.oldest_ts() is None
    assert [r.pos for r in store.append([_sample(2, store.boot)]).records] == [3]


def test_store_next_seq_follows_the_current_boot_only(make_store: StoreFactory) -> None:
    store = make_store(10)
    boot = store.boot
    assert store.next_seq == 0
    store.append([_sample(4, boot), _sample(2, boot)])
    assert store.next_seq == 5
    store.append([_sample(100, boot + 1)])  # a replayed sample of another boot
    assert store.next_seq == 5


@settings(max_examples=150, deadline=None)
@given(
    kind=st.sampled_from(["memory", "sqlite"]),
    max_samples=st.integers(1, 8),
    ops=st.lists(
        st.one_of(
            st.tuples(st.just("append"), st.integers(1, 4)),
            st.tuples(st.just("confirm"), st.integers(0, 30), st.integers(0, 4)),
            st.tuples(st.just("discard"), st.integers(0, 30)),
            st.tuples(st.just("reopen")),
        ),
        max_size=25,
    ),
)
def test_store_matches_a_bounded_list(kind: str, max_samples: int, ops: list[tuple[Any, ...]]) -> None:
    """Any mix of appends, confirmations, discards (and reopens) leaves what a plain bounded list would.

    Positions included: they are never reused, not even after everything was freed and reopened.
    """
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "d.sqlite"

        def open_it() -> SampleStore:
            return MemorySampleStore(max_samples) if kind == "memory" else SqliteSampleStore(path, max_samples)

        store = open_it()
        boot = store.boot
        model: list[tuple[int, int]] = []  # (position, seq) held, oldest first
        next_seq = last_pos = 0
        try:
            for op in ops:
                if op[0] == "append":
                    count = op[1]
                    appended = store.append([_sample(next_seq + i, boot) for i in range(count)])
                    model.extend((last_pos + 1 + i, next_seq + i) for i in range(count))
                    next_seq += count
                    last_pos += count
                    overflow = max(0, len(model) - max_samples)
                    assert appended.dropped == [pos for pos, _ in model[:overflow]]
                    del model[:overflow]
                elif op[0] == "confirm":
                    first, width = op[1], op[2]
                    freed = store.confirm([PersistedRange(boot, first, first + width)])
                    gone = [pos for pos, seq in model if first <= seq <= first + width]
                    assert sorted(freed) == gone
                    model = [(pos, seq) for pos, seq in model if pos not in gone]
                elif op[0] == "discard":
                    freed = store.discard([(boot, op[1])])
                    assert freed == [pos for pos, seq in model if seq == op[1]]
                    model = [(pos, seq) for pos, seq in model if seq != op[1]]
                elif kind == "sqlite":
                    store.close()
                    store = open_it()
                    assert store.boot == boot
                assert [(r.pos, r.seq) for r in store.read_after(0, 1_000_000)] == model
                assert len(store) == len(model)
                assert store.next_seq == next_seq
                assert store.oldest_ts() == (_sample(model[0][1]).ts if model else None)
        finally:
            store.close()


def test_sqlite_store_survives_a_restart_with_samples_boot_and_seq(tmp_path: Path) -> None:
    path = tmp_path / "truck-0001.sqlite"
    store = SqliteSampleStore(path, 100, now=lambda: T0)
    boot = store.boot
    assert boot == new_boot(T0)
    store.append([_sample(seq, boot) for seq in range(6)])
    store.confirm([PersistedRange(boot, 0, 2)])
    store.close()

    reopened = SqliteSampleStore(path, 100, now=lambda: T0 + timedelta(days=1))
    try:
        assert (reopened.boot, reopened.next_seq, len(reopened)) == (boot, 6, 3)
        assert _seqs(reopened) == [3, 4, 5]
        assert [r.pos for r in reopened.append([_sample(6, boot)]).records] == [7]
    finally:
        reopened.close()


def test_sqlite_store_keeps_the_seq_counter_when_everything_was_confirmed(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    store = SqliteSampleStore(path, 100)
    store.append([_sample(seq, store.boot) for seq in range(3)])
    store.confirm([PersistedRange(store.boot, 0, 2)])
    store.close()
    reopened = SqliteSampleStore(path, 100)
    try:
        assert (len(reopened), reopened.next_seq) == (0, 3), "an empty store still knows where its seq is"
    finally:
        reopened.close()


def test_sqlite_store_that_is_lost_or_unreadable_starts_a_new_boot(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    first = SqliteSampleStore(path, 100, now=lambda: T0)
    first.append([_sample(0, first.boot)])
    first.close()

    path.unlink()
    lost = SqliteSampleStore(path, 100, now=lambda: T0 + timedelta(hours=1))
    assert (lost.boot, lost.next_seq, len(lost)) == (new_boot(T0) + 3600, 0, 0)
    lost.close()

    path.write_bytes(b"not a database " * 512)
    for leftover in tmp_path.glob("d.sqlite-*"):
        leftover.unlink()
    replaced = SqliteSampleStore(path, 100, now=lambda: T0 + timedelta(hours=2))
    try:
        assert replaced.replaced_unreadable
        assert (replaced.boot, replaced.next_seq) == (new_boot(T0) + 7200, 0)
        assert [p.name for p in tmp_path.glob("d.sqlite.corrupt-*")], "the unreadable file is kept aside"
    finally:
        replaced.close()


def test_sqlite_store_refuses_a_second_user_of_the_same_file(tmp_path: Path) -> None:
    store = open_store(tmp_path / "stores", "truck-0001", 100)
    try:
        assert isinstance(store, SqliteSampleStore)
        assert store.path == store_path(tmp_path / "stores", "truck-0001")
        with pytest.raises(StoreError, match="in use"):
            SqliteSampleStore(store.path, 100)
    finally:
        store.close()
    SqliteSampleStore(store.path, 100).close()  # free again once closed


def test_store_bound_and_boot_are_checked() -> None:
    with pytest.raises(ValueError, match="at least one"):
        MemorySampleStore(0)
    assert isinstance(open_store(None, "d", 5), MemorySampleStore)
    assert new_boot(datetime(2019, 1, 1, tzinfo=UTC)) == 1
    assert new_boot(datetime(2088, 6, 1, tzinfo=UTC)) == 2**31 - 1


def test_memory_store_never_reuses_positions_after_compacting() -> None:
    store = MemorySampleStore(1000)
    for seq in range(200):
        store.append([_sample(seq)])
        store.discard([(0, seq)])
    assert [r.pos for r in store.append([_sample(200)]).records] == [201]


def test_sqlite_store_keeps_counters_learnt_from_samples_when_those_are_freed_after_a_reopen(tmp_path: Path) -> None:
    # Found by the model test: counters read back from the samples (not yet from `meta`) must be
    # written when those samples go, or the next reopen falls back to what `meta` said before.
    path = tmp_path / "d.sqlite"
    store = SqliteSampleStore(path, 10)
    store.append([_sample(seq, store.boot) for seq in range(4)])
    store.close()
    store = SqliteSampleStore(path, 10)
    store.discard([(store.boot, 3)])
    store.close()
    store = SqliteSampleStore(path, 10)
    try:
        assert (store.next_seq, [r.pos for r in store.append([_sample(4, store.boot)]).records]) == (4, [5])
    finally:
        store.close()


def test_sqlite_store_keeps_the_state_saved_with_the_latest_samples(tmp_path: Path) -> None:
    path = tmp_path / "d.sqlite"
    store = SqliteSampleStore(path, 10, now=lambda: T0)
    assert store.saved_state is None
    store.append([_sample(0, store.boot)], b"first")
    store.append([_sample(1, store.boot)])  # no state: the saved one stays
    store.append([_sample(2, store.boot)], b"third")
    store.close()
    again = SqliteSampleStore(path, 10)
    try:
        assert again.saved_state == b"third"
    finally:
        again.close()


def test_memory_store_opened_later_is_a_later_boot() -> None:
    first = open_store(None, "d", 5, now=lambda: T0)
    again = open_store(None, "d", 5, now=lambda: T0 + timedelta(seconds=2))
    assert again.boot > first.boot > 0
