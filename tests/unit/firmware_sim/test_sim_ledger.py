"""SeqLedger: a compact set of (boot, seq) pairs that behaves like a plain set."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from firmware_sim.ledger import SeqLedger
from models.state import PersistedRange, seq_ranges


def test_ledger_merges_in_order_pairs_into_one_range() -> None:
    ledger = SeqLedger()
    for seq in range(1000):
        assert ledger.add(0, seq)
    assert ledger.ranges() == [PersistedRange(0, 0, 999)]
    assert len(ledger) == 1000


def test_ledger_ignores_duplicates_and_merges_gaps_when_filled() -> None:
    ledger = SeqLedger()
    ledger.add(1, 5)
    ledger.add(1, 7)
    assert not ledger.add(1, 5)
    assert ledger.ranges() == [PersistedRange(1, 5, 5), PersistedRange(1, 7, 7)]
    ledger.add(1, 6)
    assert ledger.ranges() == [PersistedRange(1, 5, 7)]
    assert len(ledger) == 3


def test_ledger_keeps_boots_apart() -> None:
    ledger = SeqLedger()
    ledger.add(2, 0)
    ledger.add(1, 0)
    assert ledger.ranges() == [PersistedRange(1, 0, 0), PersistedRange(2, 0, 0)]
    assert (1, 0) in ledger
    assert (3, 0) not in ledger
    assert "x" not in ledger


def test_ledger_counts_only_new_pairs_of_overlapping_ranges() -> None:
    ledger = SeqLedger()
    assert ledger.update([PersistedRange(0, 10, 19), PersistedRange(0, 30, 39)]) == 20
    assert ledger.add_range(0, 15, 34) == 10
    assert ledger.ranges() == [PersistedRange(0, 10, 39)]
    assert ledger.add_range(0, 5, 4) == 0


@given(st.lists(st.tuples(st.integers(0, 2), st.integers(0, 60), st.integers(0, 5)), max_size=60))
def test_ledger_matches_a_plain_set(adds: list[tuple[int, int, int]]) -> None:
    ledger = SeqLedger()
    expected: set[tuple[int, int]] = set()
    for boot, first, width in adds:
        new = {(boot, seq) for seq in range(first, first + width + 1)} - expected
        assert ledger.add_range(boot, first, first + width) == len(new)
        expected |= new
    assert len(ledger) == len(expected)
    assert ledger.ranges() == seq_ranges(sorted(expected))
    assert all(pair in ledger for pair in expected)
