"""Matching the bridge's replies to the messages an ingest request forwarded (no network, no clock)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from api.ingest.ledger import ReplyLedger, Unit, expected_units, outcome
from models.state import Persisted, PersistedRange, RejectedNotice
from models.telemetry import Limits

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LIMITS = Limits()
DEVICE = "truck-1"
TOPIC = f"fleet/v1/{DEVICE}/telemetry"


def sample(seq: int, **fields: Any) -> dict[str, Any]:
    return {"seq": seq, "ts": (NOW - timedelta(seconds=1)).isoformat(), "metrics": {"fuel": 50.0}} | fields


def units(payload: Any) -> list[Unit]:
    raw = payload if isinstance(payload, bytes) else json.dumps(payload).encode()
    return expected_units(raw, content_type=None, now=NOW, limits=LIMITS)


def notice(reason: str, index: int | None = None, seq: int | None = None, boot: int | None = None) -> RejectedNotice:
    return RejectedNotice(reason=reason, topic=TOPIC, received_at=NOW, index=index, seq=seq, boot=boot)


def persisted(*ranges: tuple[int, int, int]) -> list[PersistedRange]:
    return [PersistedRange(*r) for r in ranges]


def test_expected_units_name_each_sample_or_the_whole_message() -> None:
    assert [(u.index, u.boot, u.seq) for u in units(sample(5, boot=2))] == [(0, 2, 5)]
    batch = units({"samples": [sample(1), sample(2, metrics={"fuel": 150.0}), {"seq": 3}]})
    assert [(u.index, u.boot, u.seq) for u in batch] == [(0, 0, 1), (1, 0, 2), (2, None, 3)]
    assert batch[1].expected_reason == "metric fuel=150.0 outside 0…100 %"
    [whole] = units(b"{not json")
    assert whole.index is None
    assert whole.expected_reason is not None
    assert whole.expected_reason.startswith("not valid JSON telemetry")
    assert units({"samples": []}) == []


def test_a_request_with_nothing_to_store_is_settled_at_once() -> None:
    ledger = ReplyLedger()

    tracked = ledger.track(DEVICE, [units({"samples": []})])

    assert tracked.settled.is_set()


def test_persisted_settles_the_samples_it_lists_and_nothing_of_other_devices() -> None:
    ledger = ReplyLedger()
    first, second = units({"samples": [sample(1), sample(2)]}), units(sample(3, boot=1))
    tracked = ledger.track(DEVICE, [first, second])
    other = ledger.track("truck-2", [units(sample(1))])

    ledger.persisted(DEVICE, persisted((0, 1, 2)))
    assert not tracked.settled.is_set()
    ledger.persisted(DEVICE, persisted((0, 3, 3), (1, 3, 3)))

    assert tracked.settled.is_set()
    assert outcome(first).stored == persisted((0, 1, 2))
    assert outcome(second).stored == persisted((1, 3, 3))
    assert not other.settled.is_set()


def test_persisted_with_a_long_range_settles_by_scanning_the_few_keys_waiting() -> None:
    ledger = ReplyLedger()
    message = units(sample(1_000_000))
    tracked = ledger.track(DEVICE, [message])

    ledger.persisted(DEVICE, persisted((0, 0, 10_000_000)))

    assert tracked.settled.is_set()
    assert outcome(message).stored == persisted((0, 1_000_000, 1_000_000))


def test_each_refusal_settles_one_of_two_identical_bad_lines() -> None:
    ledger = ReplyLedger()
    bad = sample(9, metrics={"fuel": 150.0})
    tracked = ledger.track(DEVICE, [units(bad), units(bad)])

    ledger.rejected(DEVICE, notice("metric fuel=150.0 outside 0…100 %", index=0, seq=9, boot=0))
    assert not tracked.settled.is_set()
    ledger.rejected(DEVICE, notice("metric fuel=150.0 outside 0…100 %", index=0, seq=9, boot=0))

    assert tracked.settled.is_set()
    assert [len(outcome(m).refused) for m in tracked.messages] == [1, 1]


def test_whole_message_refusals_go_to_the_message_expected_to_fail_that_way() -> None:
    ledger = ReplyLedger()
    first, second = units(b"[1, 2"), units(b"null")
    tracked = ledger.track(DEVICE, [first, second])
    second_reason = second[0].expected_reason
    assert second_reason is not None

    ledger.rejected(DEVICE, notice(second_reason))

    assert [u.reason for u in first] == [None]
    assert [u.reason for u in second] == [second_reason]
    assert not tracked.settled.is_set()


def test_the_bridges_word_wins_over_the_apis_prediction() -> None:
    ledger = ReplyLedger()
    # Expected to pass here, refused by the bridge (its clock, say, moved past the skew limit) ...
    passing = units(sample(1))
    # ... and expected to be refused here, stored by the bridge.
    failing = units(sample(2, metrics={"fuel": 150.0}))
    tracked = ledger.track(DEVICE, [passing, failing])

    ledger.rejected(DEVICE, notice("timestamp too far ahead", index=0, seq=1, boot=0))
    ledger.persisted(DEVICE, persisted((0, 2, 2)))

    assert tracked.settled.is_set()
    assert outcome(passing).refused[0].reason == "timestamp too far ahead"
    assert outcome(failing).stored == persisted((0, 2, 2))


def test_a_whole_refusal_of_a_message_that_decoded_settles_all_its_samples() -> None:
    ledger = ReplyLedger()
    message = units({"samples": [sample(1), sample(2)]})
    tracked = ledger.track(DEVICE, [message])

    ledger.rejected(DEVICE, notice("database refused: value too long"))

    assert tracked.settled.is_set()
    assert [u.reason for u in message] == ["database refused: value too long"] * 2


def test_a_sample_without_a_readable_seq_is_settled_by_its_index() -> None:
    ledger = ReplyLedger()
    message = units({"samples": [sample(1), {"ts": "yesterday"}]})
    tracked = ledger.track(DEVICE, [message])

    ledger.persisted(DEVICE, persisted((0, 1, 1)))
    ledger.rejected(DEVICE, notice("invalid sample: Object missing required field `seq`", index=1))

    assert tracked.settled.is_set()
    assert [(u.index, u.reason is not None) for u in outcome(message).refused] == [(1, True)]


def test_dispatch_ignores_other_devices_status_refusals_and_garbage() -> None:
    ledger = ReplyLedger()
    message = units(sample(1))
    tracked = ledger.track(DEVICE, [message])
    status_refusal = RejectedNotice(reason="invalid status", topic=f"fleet/v1/{DEVICE}/status", received_at=NOW)

    ledger.dispatch("fleet/v1/truck-2/persisted", msgspec.json.encode(Persisted(persisted((0, 1, 1)), NOW)))
    ledger.dispatch(f"fleet/v1/{DEVICE}/rejected", msgspec.json.encode(status_refusal))
    ledger.dispatch(f"fleet/v1/{DEVICE}/persisted", b"not json")
    ledger.dispatch("elsewhere/persisted", b"{}")
    assert not tracked.settled.is_set()

    ledger.dispatch(f"fleet/v1/{DEVICE}/persisted", msgspec.json.encode(Persisted(persisted((0, 1, 1)), NOW)))
    assert tracked.settled.is_set()


def test_forgotten_requests_take_no_more_replies() -> None:
    ledger = ReplyLedger()
    message = units(sample(1))
    tracked = ledger.track(DEVICE, [message])

    ledger.forget(tracked)
    ledger.persisted(DEVICE, persisted((0, 1, 1)))

    assert not tracked.settled.is_set()
    assert outcome(message).open == 1


def test_a_refusal_told_twice_settles_nothing_else() -> None:
    ledger = ReplyLedger()
    broken, good = units(b"{oops"), units(sample(7))
    tracked = ledger.track(DEVICE, [broken, good])
    reason = broken[0].expected_reason
    assert reason is not None

    ledger.rejected(DEVICE, notice(reason))
    ledger.rejected(DEVICE, notice(reason))  # the same refusal again, for a redelivered message

    assert good[0].reason is None
    assert not tracked.settled.is_set()
    ledger.persisted(DEVICE, persisted((0, 7, 7)))
    assert outcome(good).stored == persisted((0, 7, 7))
