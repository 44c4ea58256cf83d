"""Every file of the hostile telemetry corpus through the bridge's decode path, with its expected outcome."""

from __future__ import annotations

from dataclasses import replace
from datetime import timedelta

import pytest

from bridge.decode import Decoded, decode_message
from bridge.message import RawMessage
from models.telemetry import Limits
from tests.corpus import CORPUS_NOW, Case, Outcome, load_cases

CASES = load_cases()
DEFAULT_TOPIC = "fleet/v1/hostile-0/telemetry"
# A later clock with a retention reaching back to the corpus (as the integration test runs it).
LATER = CORPUS_NOW + timedelta(days=400)
LATER_LIMITS = Limits(max_age=timedelta(days=3650))


def decode(case: Case, *, later: bool = False) -> Decoded:
    message = RawMessage(
        topic=DEFAULT_TOPIC if case.topic is None else case.topic,
        payload=case.payload,
        content_type=case.content_type,
        received_at=CORPUS_NOW,
    )
    if later:
        return decode_message(replace(message, received_at=LATER), now=LATER, limits=LATER_LIMITS)
    return decode_message(message, now=CORPUS_NOW, limits=Limits())


def assert_outcome(case: Case, decoded: Decoded) -> None:
    described = f"{case.name}: {[(r.index, r.reason) for r in decoded.rejections]}"
    for rejection in decoded.rejections:
        assert rejection.reason.strip(), described
        assert case.reason in rejection.reason, described
        assert rejection.payload == case.payload
    if case.outcome is Outcome.REJECTED_WHOLE:
        assert decoded.refused_whole, described
        assert [r.index for r in decoded.rejections] == [-1], described
        assert decoded.rows == []
    elif case.outcome is Outcome.SAMPLE_REJECTED:
        assert [r.index for r in decoded.rejections] == list(case.rejected), described
        assert len(decoded.rows) == case.accepted, described
    else:
        assert decoded.rejections == [], described
        assert len(decoded.rows) == case.accepted, described
        assert len(decoded.samples) == case.accepted


def test_corpus_covers_every_outcome_and_each_file_is_indexed() -> None:
    from tests.corpus import TELEMETRY_DIR

    files = {path.name for path in TELEMETRY_DIR.iterdir() if path.name != "cases.json"}
    assert files == {case.name for case in CASES}
    assert {case.outcome for case in CASES} == set(Outcome)
    assert len(CASES) >= 100


@pytest.mark.parametrize("case", CASES, ids=[case.name for case in CASES])
def test_corpus_case_has_its_expected_outcome(case: Case) -> None:
    assert_outcome(case, decode(case))


@pytest.mark.parametrize(
    "case", [c for c in CASES if not c.corpus_clock], ids=[c.name for c in CASES if not c.corpus_clock]
)
def test_corpus_case_keeps_its_outcome_at_a_later_clock(case: Case) -> None:
    assert_outcome(case, decode(case, later=True))
