"""Property tests of the telemetry decode path against arbitrary, hostile and valid input.

Whatever arrives, `decode_telemetry` and `decode_message` return values, never raise; whatever they
accept satisfies every constraint of the design (checked here independently of `check_sample`); valid
samples round-trip exactly through JSON and MessagePack; in a batch, exactly the bad samples are refused.
"""

from __future__ import annotations

import contextlib
import json
import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import msgspec
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from msgspec.structs import replace

from bridge.decode import Decoded, decode_message
from bridge.message import RawMessage
from models.telemetry import (
    KNOWN_METRICS,
    Aggregate,
    DecodedTelemetry,
    Limits,
    MessageRejection,
    Position,
    Sample,
    TelemetryBatch,
    decode_telemetry,
)
from models.topics import is_device_id
from tests.corpus import METRIC_NAME, violation

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LIMITS = Limits()
MSGPACK = "application/msgpack"
TOPIC = "fleet/v1/prop-1/telemetry"
FIELD_NAMES = ["seq", "ts", "boot", "pos", "metrics", "agg", "quality", "samples", "lat", "lon", "min", "max", "avg"]


def examples(count: int) -> settings:
    return settings(max_examples=count, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def decode(payload: bytes, content_type: str | None = None) -> DecodedTelemetry | MessageRejection:
    return decode_telemetry(payload, content_type=content_type, now=NOW, limits=LIMITS)


def message(payload: bytes, content_type: str | None = None, topic: str = TOPIC) -> Decoded:
    raw = RawMessage(topic=topic, payload=payload, content_type=content_type, received_at=NOW)
    return decode_message(raw, now=NOW, limits=LIMITS)


# --- the constraints, written out again -------------------------------------------------------------


def assert_valid(sample: Sample) -> None:
    """Everything docs/topics.md asks of an accepted sample, and what the database's columns can hold."""
    assert violation(sample, now=NOW, limits=LIMITS) is None, (violation(sample, now=NOW, limits=LIMITS), sample)


def assert_sound(result: DecodedTelemetry | MessageRejection) -> None:
    if isinstance(result, MessageRejection):
        assert result.reason.strip()
        return
    for sample in result.samples:
        assert_valid(sample)
    for rejection in result.rejections:
        assert rejection.reason.strip()
        assert rejection.index >= 0
        assert rejection.seq is None or -(2**63) <= rejection.seq < 2**63  # it goes to a bigint column
    indexes = [r.index for r in result.rejections]
    assert indexes == sorted(set(indexes))


def assert_sound_message(decoded: Decoded) -> None:
    for rejection in decoded.rejections:
        assert rejection.reason.strip()
        assert rejection.seq is None or -(2**63) <= rejection.seq < 2**63
    if decoded.rows:
        assert decoded.device_id is not None
        assert is_device_id(decoded.device_id)
    for sample in decoded.samples:
        assert_valid(sample)
    assert len(decoded.rows) == len(decoded.samples) == len(decoded.keys)


# --- (a) arbitrary bytes -----------------------------------------------------------------------------


@examples(200)
@given(payload=st.binary(max_size=512), msgpack=st.booleans())
def test_decode_never_raises_on_arbitrary_bytes(payload: bytes, msgpack: bool) -> None:
    content_type = MSGPACK if msgpack else None
    assert_sound(decode(payload, content_type))
    assert_sound_message(message(payload, content_type))


@examples(100)
@given(device=st.text(max_size=80), kind=st.sampled_from(["telemetry", "events", "cmd/ack", "", "telemetry/"]))
def test_decode_message_never_raises_on_arbitrary_topics(device: str, kind: str) -> None:
    payload = msgspec.json.encode({"seq": 1, "ts": NOW.isoformat()})
    decoded = message(payload, topic=f"fleet/v1/{device}/{kind}")
    assert_sound_message(decoded)
    if decoded.rows:
        assert decoded.device_id == device


@examples(100)
@given(payload=st.binary(max_size=256) | st.integers(min_value=1, max_value=20_000).map(lambda n: b"[" * n + b"]" * n))
def test_decode_message_never_raises_on_arbitrary_status_payloads(payload: bytes) -> None:
    decoded = message(b'{"state":"online","x":' + payload + b"}", topic="fleet/v1/prop-1/status")
    assert_sound_message(decoded)
    decoded = message(payload, topic="fleet/v1/prop-1/status")
    assert_sound_message(decoded)


# --- (b) arbitrary JSON-like values, and sample-like ones --------------------------------------------

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=12)
)
json_like = st.recursive(
    scalars,
    lambda children: (
        st.lists(children, max_size=5)
        | st.dictionaries(st.sampled_from(FIELD_NAMES) | st.text(max_size=8), children, max_size=6)
    ),
    max_leaves=40,
)
any_float = st.floats(allow_nan=True, allow_infinity=True) | st.integers(min_value=-(10**6), max_value=10**6)
metric_names = st.from_regex(METRIC_NAME, fullmatch=True)
near_names = metric_names | st.sampled_from(list(KNOWN_METRICS)) | st.text(max_size=6) | st.just("fuel\n")
NEAR_FIRST = datetime(2026, 10, 1)  # naive: hypothesis takes naive bounds
NEAR_LAST = datetime(2026, 12, 31)
near_ts = st.one_of(
    st.datetimes(NEAR_FIRST, NEAR_LAST, timezones=st.just(UTC)).map(datetime.isoformat),
    st.datetimes(NEAR_FIRST, NEAR_LAST).map(datetime.isoformat),  # no zone: refused
    st.sampled_from(["2026-02-30T00:00:00Z", "0001-01-01T00:00:00Z", "9999-12-31T23:59:59Z", "", "now"]),
    st.integers(),
)
near_pos = st.fixed_dictionaries(
    {"lat": any_float, "lon": any_float},
    optional=dict.fromkeys(("alt", "speed", "heading", "accuracy"), any_float),
)
near_agg = st.fixed_dictionaries(
    {"min": any_float, "max": any_float, "avg": any_float, "count": st.integers(min_value=-1, max_value=2_000_000)}
)
near_sample = st.fixed_dictionaries(
    {"seq": st.integers(min_value=-5, max_value=2**64) | json_like, "ts": near_ts},
    optional={
        "boot": st.integers(min_value=-5, max_value=2**32),
        "pos": near_pos | json_like,
        "metrics": st.dictionaries(near_names, any_float, max_size=5) | json_like,
        "agg": st.dictionaries(near_names, near_agg, max_size=3),
        "quality": st.integers(min_value=-5, max_value=200) | st.floats(),
        "firmware": json_like,
    },
)
near_message = near_sample | st.fixed_dictionaries({"samples": st.lists(near_sample | json_like, max_size=6)})


def encodings(value: Any) -> list[tuple[bytes, str | None]]:
    """`value` as JSON (NaN and infinities as the literals Python writes) and, when it can, MessagePack."""
    out: list[tuple[bytes, str | None]] = [(json.dumps(value, allow_nan=True).encode(), None)]
    with contextlib.suppress(OverflowError):  # an integer MessagePack cannot carry
        out.append((msgspec.msgpack.encode(value), MSGPACK))
    return out


@examples(100)
@given(value=json_like)
def test_decode_never_raises_on_arbitrary_json_like_values(value: Any) -> None:
    for payload, content_type in encodings(value):
        assert_sound(decode(payload, content_type))
        assert_sound_message(message(payload, content_type))


@examples(150)
@given(value=near_message)
def test_whatever_decode_accepts_from_near_valid_values_is_valid(value: Any) -> None:
    for payload, content_type in encodings(value):
        assert_sound(decode(payload, content_type))
        assert_sound_message(message(payload, content_type))


# --- (c) valid samples round-trip --------------------------------------------------------------------


def finite(low: float, high: float, *, exclude_max: bool = False) -> st.SearchStrategy[float]:
    return st.floats(min_value=low, max_value=high, allow_nan=False, allow_infinity=False, exclude_max=exclude_max)


def metric_value(name: str) -> st.SearchStrategy[float]:
    spec = KNOWN_METRICS.get(name)
    return finite(-1e300, 1e300) if spec is None else finite(spec.low, spec.high)


@st.composite
def metric_maps(draw: st.DrawFn, max_size: int = 6) -> dict[str, float]:
    names = draw(st.lists(st.sampled_from(list(KNOWN_METRICS)) | metric_names, max_size=max_size, unique=True))
    return {name: draw(metric_value(name)) for name in names}


@st.composite
def aggregates(draw: st.DrawFn) -> dict[str, Aggregate]:
    names = draw(st.lists(st.sampled_from(list(KNOWN_METRICS)) | metric_names, max_size=3, unique=True))
    out = {}
    for name in names:
        low, avg, high = sorted(draw(st.lists(metric_value(name), min_size=3, max_size=3)))
        out[name] = Aggregate(min=low, max=high, avg=avg, count=draw(st.integers(min_value=1, max_value=1_000_000)))
    return out


positions = st.builds(
    Position,
    lat=finite(-90, 90),
    lon=finite(-180, 180),
    alt=st.none() | finite(-1000, 20000),
    speed=st.none() | finite(0, 500),
    heading=st.none() | finite(0, 360, exclude_max=True),
    accuracy=st.none() | finite(0, 100_000),
)
offsets = st.sampled_from([UTC, timezone(timedelta(hours=5, minutes=30)), timezone(-timedelta(hours=8))])
timestamps = st.builds(
    lambda d, tz: d.astimezone(tz),
    st.datetimes(
        min_value=(NOW - LIMITS.max_age).replace(tzinfo=None),
        max_value=(NOW + LIMITS.future_skew).replace(tzinfo=None),
        timezones=st.just(UTC),
    ),
    offsets,
)
valid_samples = st.builds(
    Sample,
    seq=st.integers(min_value=0, max_value=2**63 - 1),
    ts=timestamps,
    boot=st.integers(min_value=0, max_value=2**31 - 1),
    pos=st.none() | positions,
    metrics=metric_maps(),
    agg=aggregates(),
    quality=st.none() | st.integers(min_value=0, max_value=100),
)


def encode(value: Any, content_type: str | None) -> bytes:
    return msgspec.msgpack.encode(value) if content_type == MSGPACK else msgspec.json.encode(value)


@examples(100)
@given(sample=valid_samples, content_type=st.sampled_from([None, MSGPACK]))
def test_valid_sample_round_trips_exactly(sample: Sample, content_type: str | None) -> None:
    result = decode(encode(sample, content_type), content_type)
    assert isinstance(result, DecodedTelemetry)
    assert result.rejections == []
    assert result.samples == [sample]
    assert_valid(result.samples[0])


@examples(40)
@given(samples=st.lists(valid_samples, max_size=8), content_type=st.sampled_from([None, MSGPACK]))
def test_valid_batch_round_trips_exactly(samples: list[Sample], content_type: str | None) -> None:
    decoded = message(encode(TelemetryBatch(samples=samples), content_type), content_type)
    assert decoded.rejections == []
    assert decoded.samples == samples
    assert decoded.keys == [(s.boot, s.seq) for s in samples]


# --- (d) valid and invalid samples in one batch ------------------------------------------------------


def builtins(sample: Sample) -> dict[str, Any]:
    value: dict[str, Any] = msgspec.to_builtins(sample)
    return value


Spoil = Callable[[Sample], Any]
SPOILERS: list[tuple[str, Spoil]] = [
    ("negative seq", lambda s: replace(s, seq=-1)),
    ("seq above int64", lambda s: replace(s, seq=2**63)),
    ("negative boot", lambda s: replace(s, boot=-1)),
    ("a day ahead", lambda s: replace(s, ts=NOW + timedelta(days=1))),
    ("beyond retention", lambda s: replace(s, ts=NOW - LIMITS.max_age - timedelta(seconds=1))),
    ("quality 101", lambda s: replace(s, quality=101)),
    ("fuel 100.5", lambda s: replace(s, metrics={**s.metrics, "fuel": 100.5})),
    ("bad metric name", lambda s: replace(s, metrics={**s.metrics, "Fuel": 1.0})),
    ("NaN metric", lambda s: replace(s, metrics={**s.metrics, "rpm": math.nan})),  # JSON writes NaN as null
    ("infinite metric", lambda s: replace(s, metrics={**s.metrics, "rpm": math.inf})),
    ("lat 91", lambda s: replace(s, pos=Position(lat=91.0, lon=0.0))),
    ("NaN lon", lambda s: replace(s, pos=Position(lat=0.0, lon=math.nan))),
    ("agg min > max", lambda s: replace(s, agg={"flow": Aggregate(min=2.0, max=1.0, avg=1.5, count=1)})),
    ("no ts", lambda s: {k: v for k, v in builtins(s).items() if k != "ts"}),
    ("ts without zone", lambda s: {**builtins(s), "ts": s.ts.replace(tzinfo=None).isoformat()}),
    ("February 30", lambda s: {**builtins(s), "ts": "2026-02-30T00:00:00Z"}),
    ("seq as text", lambda s: {**builtins(s), "seq": str(s.seq)}),
    ("not an object", lambda s: [s.seq]),
    ("null", lambda s: None),
]
entries = st.one_of(
    valid_samples.map(lambda s: (s, None)),
    st.tuples(valid_samples, st.sampled_from(SPOILERS)),
)


@examples(80)
@given(batch=st.lists(entries, min_size=1, max_size=8), content_type=st.sampled_from([None, MSGPACK]))
def test_batch_rejects_exactly_its_invalid_samples_and_keeps_the_rest_in_order(
    batch: list[tuple[Sample, tuple[str, Spoil] | None]], content_type: str | None
) -> None:
    wire = [sample if spoil is None else spoil[1](sample) for sample, spoil in batch]
    payload = encode({"samples": wire}, content_type)
    result = decode(payload, content_type)
    assert isinstance(result, DecodedTelemetry)
    bad = [index for index, (_, spoil) in enumerate(batch) if spoil is not None]
    assert [r.index for r in result.rejections] == bad, [(r.index, r.reason) for r in result.rejections]
    assert result.samples == [sample for sample, spoil in batch if spoil is None]
    assert all(r.reason.strip() for r in result.rejections)
    decoded = message(payload, content_type)
    assert [r.index for r in decoded.rejections] == bad
    assert len(decoded.rows) == len(batch) - len(bad)
