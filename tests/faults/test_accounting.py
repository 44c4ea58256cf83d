"""The fault accounting itself: it must see every kind of loss and duplication it claims to count."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from models.state import PersistedRange
from tests.faults.accounting import DeviceRecord, Row, tally

T0 = datetime(2026, 11, 25, tzinfo=UTC)


def device(
    next_seq: int = 10, *, acked: int = 10, persisted: int = 10, held: int = 0, dropped: int = 0
) -> DeviceRecord:
    return DeviceRecord(
        device_id="d1",
        boot=3,
        first_seq=0,
        next_seq=next_seq,
        acknowledged=[PersistedRange(3, 0, acked - 1)] if acked else [],
        persisted=[PersistedRange(3, 0, persisted - 1)] if persisted else [],
        held=held,
        dropped=dropped,
        refused=0,
    )


def rows(seqs: list[int], *, device_id: str = "d1", boot: int = 3) -> list[Row]:
    return [(device_id, boot, seq, T0 + timedelta(seconds=seq)) for seq in seqs]


def test_accounting_passes_a_clean_run() -> None:
    result = tally([device()], rows(list(range(10))))
    assert result.passed
    assert (result.generated, result.stored, result.lost, result.duplicated) == (10, 10, 0, 0)


def test_accounting_counts_an_acknowledged_sample_missing_from_the_database_as_lost() -> None:
    result = tally([device()], rows([0, 1, 2, 4, 5, 6, 7, 8, 9]))
    assert (result.lost, result.lost_acknowledged) == (1, 1)
    assert not result.passed


def test_accounting_counts_a_generated_never_acknowledged_sample_that_vanished_as_lost() -> None:
    result = tally([device(acked=8, persisted=8)], rows(list(range(8))))
    assert (result.lost, result.lost_acknowledged) == (2, 0)


def test_accounting_excuses_samples_still_held_or_dropped_at_the_bound_but_does_not_pass_them() -> None:
    result = tally([device(acked=7, persisted=7, held=2, dropped=1)], rows(list(range(7))))
    assert result.lost == 0
    assert not result.passed, "a run passes only when everything generated is stored"


def test_accounting_counts_a_sample_stored_twice_under_different_device_times() -> None:
    twice = [*rows(list(range(10))), ("d1", 3, 4, T0 + timedelta(hours=1))]
    result = tally([device()], twice)
    assert (result.duplicated, result.rows, result.stored) == (1, 11, 10)
    assert not result.passed


def test_accounting_counts_rows_no_device_generated() -> None:
    result = tally([device()], [*rows(list(range(10))), *rows([0], boot=4), *rows([0], device_id="d2")])
    assert result.unexpected == 2
    assert not result.passed
