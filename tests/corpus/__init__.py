"""Hostile telemetry payloads kept as files, and the outcome each one must have.

`telemetry/` holds one file per case, named for what it is; `telemetry/cases.json` gives each file's
expected outcome when decoded by the bridge (`bridge.decode.decode_message`) at the corpus's own clock
(`CORPUS_NOW`) with the default `Limits`:

* `rejected_whole`: the message is refused as a whole (one rejection, sample index -1);
* `sample_rejected`: the samples at `rejected` are refused, `accepted` samples are kept;
* `accepted`: `accepted` samples are kept, nothing is refused.

`reason` is a fragment every rejection's reason must contain. A case with a `topic` is about the topic
(its payload is a valid sample); `mqtt: false` marks what Mosquitto refuses, or does not deliver on
`fleet/v1/+/telemetry`, so it is only tested at the decode level. `corpus_clock: true` marks a case
whose outcome depends on the clock (a timestamp just outside the skew or the retention); every other
case keeps its outcome at any later clock, as long as the retention reaches back to `CORPUS_NOW`.

Regenerate the files with `.venv/bin/python -m tests.corpus.make_telemetry`.
"""

from __future__ import annotations

import enum
import json
import math
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from models.telemetry import KNOWN_METRICS, MAX_METRICS_PER_SAMPLE, Limits, Sample

TELEMETRY_DIR: Final = Path(__file__).resolve().parent / "telemetry"
CASES_FILE: Final = TELEMETRY_DIR / "cases.json"
CORPUS_NOW: Final = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
METRIC_NAME: Final = re.compile(r"[a-z][a-z0-9_]{0,31}")


class Outcome(enum.StrEnum):
    """What decoding one corpus file must come to."""

    REJECTED_WHOLE = "rejected_whole"
    SAMPLE_REJECTED = "sample_rejected"
    ACCEPTED = "accepted"


@dataclass(frozen=True, slots=True)
class Case:
    """One corpus file and its expected outcome."""

    name: str
    payload: bytes
    outcome: Outcome
    reason: str = ""
    accepted: int = 0
    rejected: tuple[int, ...] = ()
    content_type: str | None = None
    topic: str | None = None
    mqtt: bool = True
    corpus_clock: bool = False
    note: str = ""


def entry(case: Case) -> dict[str, Any]:
    """The `cases.json` entry of `case` (defaults left out)."""
    out: dict[str, Any] = {"outcome": case.outcome.value}
    defaults = Case("", b"", case.outcome)
    for key in ("reason", "accepted", "rejected", "content_type", "topic", "mqtt", "corpus_clock", "note"):
        value = getattr(case, key)
        if value != getattr(defaults, key):
            out[key] = list(value) if isinstance(value, tuple) else value
    return out


def load_cases() -> list[Case]:
    """Every case of the corpus, in file-name order."""
    # The standard library's json, not msgspec: topics may hold lone surrogates, which only it reads back.
    index: dict[str, dict[str, Any]] = json.loads(CASES_FILE.read_text(encoding="utf-8"))
    cases = []
    for name in sorted(index):
        spec = index[name]
        cases.append(
            Case(
                name=name,
                payload=(TELEMETRY_DIR / name).read_bytes(),
                outcome=Outcome(spec["outcome"]),
                reason=spec.get("reason", ""),
                accepted=spec.get("accepted", 0),
                rejected=tuple(spec.get("rejected", ())),
                content_type=spec.get("content_type"),
                topic=spec.get("topic"),
                mqtt=spec.get("mqtt", True),
                corpus_clock=spec.get("corpus_clock", False),
                note=spec.get("note", ""),
            )
        )
    return cases


def violation(sample: Sample, *, now: datetime, limits: Limits) -> str | None:
    """The first rule of docs/topics.md (validation) an accepted `sample` breaks, or None.

    Written out again, independently of `check_sample` and of the msgspec constraints, as the oracle
    of the property tests and of `bench/fuzz.py`; it includes what the database's columns can hold.
    """
    if not 0 <= sample.seq <= 2**63 - 1 or not 0 <= sample.boot <= 2**31 - 1:
        return f"seq {sample.seq} or boot {sample.boot} out of range"
    if sample.ts.utcoffset() is None:
        return "timestamp without a zone"
    if not now - limits.max_age <= sample.ts <= now + limits.future_skew:
        return f"timestamp {sample.ts} outside the window"
    if sample.quality is not None and not 0 <= sample.quality <= 100:
        return f"quality {sample.quality}"
    pos = sample.pos
    if pos is not None:
        bounds = (
            (pos.lat, -90, 90),
            (pos.lon, -180, 180),
            (pos.alt, -1000, 20000),
            (pos.speed, 0, 500),
            (pos.heading, 0, 360),
            (pos.accuracy, 0, 100_000),
        )
        for value, low, high in bounds:
            if value is not None and not (math.isfinite(value) and low <= value <= high):
                return f"position value {value} outside {low}…{high}"
        if pos.heading is not None and pos.heading == 360:
            return "heading 360"
    if len(sample.metrics) > MAX_METRICS_PER_SAMPLE or len(sample.agg) > MAX_METRICS_PER_SAMPLE:
        return "too many metrics"
    values = [(name, value) for name, value in sample.metrics.items()]
    for name, agg in sample.agg.items():
        values += [(name, agg.min), (name, agg.avg), (name, agg.max)]
        if not agg.min <= agg.avg <= agg.max or not 1 <= agg.count <= 1_000_000:
            return f"aggregate {name} inconsistent"
    for name, value in values:
        if METRIC_NAME.fullmatch(name) is None:
            return f"metric name {name!r}"
        if not isinstance(value, float) or not math.isfinite(value):
            return f"metric {name} value {value!r}"
        spec = KNOWN_METRICS.get(name)
        if spec is not None and not spec.low <= value <= spec.high:
            return f"metric {name}={value} out of range"
    return None
