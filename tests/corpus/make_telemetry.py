"""Write the hostile telemetry corpus: one file per case under `telemetry/`, and `telemetry/cases.json`.

    .venv/bin/python -m tests.corpus.make_telemetry

Deterministic: running it again rewrites the same bytes. The expected outcomes are written here by
hand, from the design (docs/topics.md, validation), not read off the decoder.
"""

from __future__ import annotations

import json
import random
import string
import struct
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from models.telemetry import Limits
from tests.corpus import CASES_FILE, CORPUS_NOW, TELEMETRY_DIR, Case, Outcome, entry

MSGPACK = "application/msgpack"
LIMITS = Limits()
GOOD_TS = "2026-11-25T11:59:00Z"
GOOD_EPOCH_S = int((CORPUS_NOW - timedelta(minutes=1)).timestamp())
GOOD_EPOCH_MS = GOOD_EPOCH_S * 1000
NOT_JSON = "not valid JSON telemetry"
NOT_MSGPACK = "not valid MessagePack telemetry"
INVALID = "invalid sample"
WHOLE = Outcome.REJECTED_WHOLE
SAMPLE = Outcome.SAMPLE_REJECTED
OK = Outcome.ACCEPTED
NESTING = 10_000

cases: list[Case] = []


def add(name: str, payload: bytes, outcome: Outcome, reason: str = "", **fields: Any) -> None:
    """Register one case; a sample rejection defaults to index 0, an acceptance to one sample."""
    if outcome is SAMPLE and "rejected" not in fields:
        fields["rejected"] = (0,)
    if outcome is OK and "accepted" not in fields:
        fields["accepted"] = 1
    if "rejected" in fields:
        fields["rejected"] = tuple(fields["rejected"])
    ext = "msgpack" if fields.get("content_type") == MSGPACK else "json"
    cases.append(Case(f"{name}.{ext}", payload, outcome, reason, **fields))


def sample(seq: Any = 1, ts: Any = GOOD_TS, **fields: Any) -> dict[str, Any]:
    return {"seq": seq, "ts": ts, **fields}


def js(value: Any) -> bytes:
    """Compact JSON; NaN and infinities are refused here, so a case holding them spells them out."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()


def mp(value: Any) -> bytes:
    return msgspec.msgpack.encode(value)


def ts_at(delta: timedelta) -> str:
    return (CORPUS_NOW + delta).isoformat().replace("+00:00", "Z")


def msgpack_ext_ts(seconds: int, nanoseconds: int = 0) -> bytes:
    """A MessagePack timestamp (extension type -1), 96-bit form: any seconds, any nanoseconds field."""
    return b"\xc7\x0c\xff" + struct.pack(">Iq", nanoseconds, seconds)


def msgpack_sample_with_ts(ts: bytes) -> bytes:
    return b"\x82\xa3seq\x01\xa2ts" + ts


def invalid_json() -> None:
    good = js(sample(metrics={"fuel": 50}))
    add("json-truncated-mid-object", good[:-3], WHOLE, NOT_JSON)
    add("json-truncated-mid-string", js(sample())[:22], WHOLE, NOT_JSON)
    add("json-truncated-batch", js({"samples": [sample(1), sample(2)]})[:-10], WHOLE, NOT_JSON)
    add("json-trailing-garbage", good + b"xyz", WHOLE, NOT_JSON)
    add("json-trailing-second-object", good + good, WHOLE, NOT_JSON)
    add("json-utf8-bom", b"\xef\xbb\xbf" + good, WHOLE, NOT_JSON)
    add("json-utf16le", good.decode().encode("utf-16-le"), WHOLE, NOT_JSON)
    add("json-utf16-bom", good.decode().encode("utf-16"), WHOLE, NOT_JSON)
    add("json-single-quotes", good.replace(b'"', b"'"), WHOLE, NOT_JSON)
    add("json-trailing-comma", good[:-1] + b",}", WHOLE, NOT_JSON)
    add("json-comment", b"// firmware 1.2\n" + good, WHOLE, NOT_JSON)
    add("json-nan-literal", b'{"seq":1,"ts":"%s","metrics":{"fuel":NaN}}' % GOOD_TS.encode(), WHOLE, NOT_JSON)
    add(
        "json-infinity-literal",
        b'{"seq":1,"ts":"%s","pos":{"lat":Infinity,"lon":0}}' % GOOD_TS.encode(),
        WHOLE,
        NOT_JSON,
    )
    add(
        "json-negative-infinity-literal",
        b'{"seq":1,"ts":"%s","metrics":{"rpm":-Infinity}}' % GOOD_TS.encode(),
        WHOLE,
        NOT_JSON,
    )
    add("json-empty-payload", b"", WHOLE, NOT_JSON)
    add("json-whitespace-only", b" \n\t ", WHOLE, NOT_JSON)
    add("json-nul-bytes", b"\x00" * 16, WHOLE, NOT_JSON)
    add("json-null", b"null", WHOLE, NOT_JSON, note="parseable, but no telemetry message is null")
    add("json-top-level-array-of-samples", js([sample(1), sample(2)]), WHOLE, NOT_JSON)
    add("json-top-level-array-mentioning-samples", js(["samples"]), WHOLE, NOT_JSON)
    add("json-top-level-string", js("seq 1"), WHOLE, NOT_JSON)
    add("json-top-level-number", b"42", WHOLE, NOT_JSON)
    add("json-top-level-true", b"true", WHOLE, NOT_JSON)
    add("json-lone-surrogate-escape-in-unknown-field", js(sample())[:-1] + b',"note":"\\ud800"}', WHOLE, NOT_JSON)
    add(
        "json-invalid-utf8-in-metric-name",
        b'{"seq":1,"ts":"%s","metrics":{"fu\xe9l":50}}' % GOOD_TS.encode(),
        WHOLE,
        NOT_JSON,
        note="Latin-1 bytes in a key: msgspec raises UnicodeDecodeError, outside its DecodeError",
    )
    add(
        "json-invalid-utf8-in-agg-name",
        b'{"seq":1,"ts":"%s","agg":{"\xff\xfe":{"min":1,"max":2,"avg":1.5,"count":3}}}' % GOOD_TS.encode(),
        WHOLE,
        NOT_JSON,
    )
    add("json-invalid-utf8-in-ts", b'{"seq":1,"ts":"2026-11-25T11:59:00\xe9"}', SAMPLE, INVALID)
    add(
        "json-invalid-utf8-in-unknown-field",
        js(sample())[:-1] + b',"firmware":"v\xe9"}',
        OK,
        note="unknown fields are skipped unread, as newer firmware needs",
    )
    add("json-empty-object", b"{}", SAMPLE, "missing required field `seq`")
    add("msgpack-truncated", mp(sample(metrics={"fuel": 50}))[:-4], WHOLE, NOT_MSGPACK, content_type=MSGPACK)
    add("msgpack-trailing-garbage", mp(sample()) + b"\xc1", WHOLE, NOT_MSGPACK, content_type=MSGPACK)
    add("msgpack-json-bytes", js(sample()), WHOLE, NOT_MSGPACK, content_type=MSGPACK)
    add("msgpack-nil", mp(None), WHOLE, NOT_MSGPACK, content_type=MSGPACK)
    add("msgpack-empty-payload", b"", WHOLE, NOT_MSGPACK, content_type=MSGPACK)
    add(
        "msgpack-invalid-utf8-in-metric-name",
        b"\x83\xa3seq\x01\xa2ts" + mp(GOOD_TS) + b"\xa7metrics\x81\xa4fu\xe9l\x01",
        WHOLE,
        NOT_MSGPACK,
        content_type=MSGPACK,
    )


def wrong_types() -> None:
    add("seq-as-string", js(sample(seq="1")), SAMPLE, "Expected `int`, got `str` - at `$.seq`")
    add("seq-negative", js(sample(seq=-1)), SAMPLE, "Expected `int` >= 0 - at `$.seq`")
    add("seq-float", js(sample(seq=1.5)), SAMPLE, "at `$.seq`")
    add("seq-bool", js(sample(seq=True)), SAMPLE, "at `$.seq`")
    add("seq-null", js(sample(seq=None)), SAMPLE, "at `$.seq`")
    add("seq-missing", js({"ts": GOOD_TS}), SAMPLE, "missing required field `seq`")
    add("seq-int64-max-plus-one", js(sample(seq=2**63)), SAMPLE, "at `$.seq`")
    add("seq-uint64-max", js(sample(seq=2**64 - 1)), SAMPLE, "at `$.seq`")
    add("seq-above-uint64", js(sample(seq=2**64 + 1)), SAMPLE, "at `$.seq`")
    add("seq-400-digits", js(sample(seq=10**400)), SAMPLE, "at `$.seq`")
    add("seq-uint64-max-msgpack", mp(sample(seq=2**64 - 1)), SAMPLE, "at `$.seq`", content_type=MSGPACK)
    add("seq-int64-min-msgpack", mp(sample(seq=-(2**63))), SAMPLE, "at `$.seq`", content_type=MSGPACK)
    add("seq-int64-max-accepted", js(sample(seq=2**63 - 1)), OK)
    add("boot-negative", js(sample(boot=-1)), SAMPLE, "at `$.boot`")
    add("boot-above-int32", js(sample(boot=2**31)), SAMPLE, "at `$.boot`")
    add("lat-as-string", js(sample(pos={"lat": "52.1", "lon": 4.3})), SAMPLE, "at `$.pos.lat`")
    add("lon-missing", js(sample(pos={"lat": 52.1})), SAMPLE, "missing required field `lon` - at `$.pos`")
    add("pos-as-array", js(sample(pos=[52.1, 4.3])), SAMPLE, "at `$.pos`")
    add("pos-null-accepted", js(sample(pos=None)), OK)
    add("fuel-as-bool", js(sample(metrics={"fuel": True})), SAMPLE, "at `$.metrics[...]`")
    add("fuel-as-string", js(sample(metrics={"fuel": "50"})), SAMPLE, "at `$.metrics[...]`")
    add("fuel-as-null", js(sample(metrics={"fuel": None})), SAMPLE, "at `$.metrics[...]`")
    add("metrics-as-array", js(sample(metrics=[["fuel", 50]])), SAMPLE, "at `$.metrics`")
    add(
        "agg-count-as-float",
        js(sample(agg={"vibration": {"min": 1, "max": 3, "avg": 2, "count": 2.5}})),
        SAMPLE,
        "count",
    )
    add("quality-as-float", js(sample(quality=50.5)), SAMPLE, "at `$.quality`")
    add("ts-as-number", js(sample(ts=GOOD_EPOCH_S)), SAMPLE, "not Unix epoch milliseconds")
    add("ts-as-null", js(sample(ts=None)), SAMPLE, "at `$.ts`")
    add("ts-missing", js({"seq": 1}), SAMPLE, "missing required field `ts`")


def out_of_range() -> None:
    add("lat-above-90", js(sample(pos={"lat": 90.000001, "lon": 0})), SAMPLE, "at `$.pos.lat`")
    add("lat-exactly-90-accepted", js(sample(pos={"lat": 90, "lon": -180})), OK)
    add("lon-below-minus-180", js(sample(pos={"lat": 0, "lon": -180.5})), SAMPLE, "at `$.pos.lon`")
    add("heading-360", js(sample(pos={"lat": 0, "lon": 0, "heading": 360})), SAMPLE, "at `$.pos.heading`")
    add("speed-negative", js(sample(pos={"lat": 0, "lon": 0, "speed": -0.1})), SAMPLE, "at `$.pos.speed`")
    add("alt-below-minus-1000", js(sample(pos={"lat": 0, "lon": 0, "alt": -1001})), SAMPLE, "at `$.pos.alt`")
    add("quality-101", js(sample(quality=101)), SAMPLE, "at `$.quality`")
    add("fuel-above-100", js(sample(metrics={"fuel": 100.5})), SAMPLE, "metric fuel=100.5 outside")
    add("temperature-below-minus-40", js(sample(metrics={"temperature": -40.5})), SAMPLE, "metric temperature")
    add("fuel-bounds-accepted", js(sample(metrics={"fuel": 0, "level": 100, "temperature": -40})), OK)
    add(
        "agg-min-above-max",
        js(sample(agg={"flow": {"min": 5, "max": 1, "avg": 3, "count": 10}})),
        SAMPLE,
        "min <= avg <= max",
    )
    add("agg-count-zero", js(sample(agg={"flow": {"min": 1, "max": 1, "avg": 1, "count": 0}})), SAMPLE, "count")
    add(
        "agg-known-metric-out-of-range",
        js(sample(agg={"level": {"min": 1, "max": 101, "avg": 50, "count": 10}})),
        SAMPLE,
        "aggregate metric level",
    )


def non_finite() -> None:
    add("json-1e999-metric", js(sample())[:-1] + b',"metrics":{"rpm":1e999}}', SAMPLE, "Number out of range")
    add(
        "json-minus-1e999-agg-min",
        js(sample())[:-1] + b',"agg":{"rpm":{"min":-1e999,"max":1,"avg":0,"count":2}}}',
        SAMPLE,
        "Number out of range",
    )
    add("json-1e999-lat", js(sample())[:-1] + b',"pos":{"lat":1e999,"lon":0}}', SAMPLE, "Number out of range")
    add("json-integer-400-digits-metric", js(sample(metrics={"rpm": 10**400})), SAMPLE, "Number out of range")
    nan, inf = float("nan"), float("inf")
    position_cases: dict[str, dict[str, float]] = {
        "nan-lat": {"lat": nan, "lon": 0.0},
        "nan-lon": {"lat": 0.0, "lon": nan},
        "inf-lon": {"lat": 0.0, "lon": inf},
        "nan-alt": {"lat": 0.0, "lon": 0.0, "alt": nan},
        "inf-alt": {"lat": 0.0, "lon": 0.0, "alt": inf},
        "nan-speed": {"lat": 0.0, "lon": 0.0, "speed": nan},
        "nan-heading": {"lat": 0.0, "lon": 0.0, "heading": nan},
        "nan-accuracy": {"lat": 0.0, "lon": 0.0, "accuracy": nan},
    }
    for name, pos in position_cases.items():
        add(f"msgpack-{name}", mp(sample(pos=pos)), SAMPLE, "at `$.pos.", content_type=MSGPACK)
    metric_cases: dict[str, dict[str, float]] = {
        "nan-known-metric": {"fuel": nan},
        "nan-unknown-metric": {"rpm": nan},
        "inf-unknown-metric": {"rpm": inf},
        "minus-inf-known-metric": {"odometer": -inf},
    }
    for name, metrics in metric_cases.items():
        add(f"msgpack-{name}", mp(sample(metrics=metrics)), SAMPLE, "is not a finite number", content_type=MSGPACK)
    for field in ("min", "max", "avg"):
        agg = {"min": 1.0, "max": 2.0, "avg": 1.5, "count": 5}
        agg[field] = nan
        add(
            f"msgpack-nan-agg-{field}",
            mp(sample(agg={"rpm": agg})),
            SAMPLE,
            "not a finite number",
            content_type=MSGPACK,
        )
    add(
        "msgpack-inf-agg-max",
        mp(sample(agg={"rpm": {"min": 1.0, "max": inf, "avg": 1.5, "count": 5}})),
        SAMPLE,
        "not a finite number",
        content_type=MSGPACK,
    )
    # msgspec writes float64; a float32 NaN (0xca) is what small firmware sends.
    float32_nan = mp(sample(metrics={"rpm": 1.5})).replace(b"\xcb" + struct.pack(">d", 1.5), b"\xca\x7f\xc0\x00\x00")
    add("msgpack-float32-nan-metric", float32_nan, SAMPLE, "not a finite number", content_type=MSGPACK)
    add(
        "msgpack-batch-nan-in-the-middle",
        mp({"samples": [sample(1), sample(2, metrics={"fuel": nan}), sample(3)]}),
        SAMPLE,
        "not a finite number",
        rejected=[1],
        accepted=2,
        content_type=MSGPACK,
    )


def huge() -> None:
    def padded(size: int) -> bytes:
        head = js(sample(metrics={"fuel": 50}))[:-1] + b',"pad":"'
        return head + b"p" * (size - len(head) - 2) + b'"}'

    add("payload-at-max-bytes-accepted", padded(LIMITS.max_payload_bytes), OK)
    add("payload-one-byte-over-max", padded(LIMITS.max_payload_bytes + 1), WHOLE, "exceeds 262144")
    most = LIMITS.max_samples_per_message
    add(
        "batch-at-max-samples-accepted",
        js({"samples": [sample(n) for n in range(most)]}),
        OK,
        accepted=most,
    )
    add(
        "batch-one-over-max-samples",
        js({"samples": [sample(n) for n in range(most + 1)]}),
        WHOLE,
        "batch of 1001 samples exceeds 1000",
    )
    add(
        "batch-one-over-max-samples-msgpack",
        mp({"samples": [sample(n) for n in range(most + 1)]}),
        WHOLE,
        "batch of 1001 samples exceeds 1000",
        content_type=MSGPACK,
    )
    add(
        "batch-of-invalid-over-max-samples",
        js({"samples": [None] * (most + 1)}),
        WHOLE,
        "exceeds 1000",
    )
    add("metrics-64-entries-accepted", js(sample(metrics={f"m{n}": n for n in range(64)})), OK)
    add("metrics-65-entries", js(sample(metrics={f"m{n}": n for n in range(65)})), SAMPLE, "length <= 64")
    add("metric-name-32-chars-accepted", js(sample(metrics={"m" * 32: 1})), OK)
    add("metric-name-33-chars", js(sample(metrics={"m" * 33: 1})), SAMPLE, "matching regex")


def deeply_nested() -> None:
    arrays = b"[" * NESTING + b"]" * NESTING
    objects = b'{"a":' * NESTING + b"1" + b"}" * NESTING
    head = js(sample())[:-1]
    add("nested-10000-arrays-top-level", arrays, WHOLE, NOT_JSON)
    add("nested-10000-objects-top-level", objects, WHOLE, "nested")
    add("nested-10000-arrays-in-unknown-field", head + b',"x":' + arrays + b"}", WHOLE, "nested")
    add("nested-10000-objects-in-unknown-field", head + b',"x":' + objects + b"}", WHOLE, "nested")
    add("nested-10000-arrays-as-metrics", head + b',"metrics":' + arrays + b"}", WHOLE, "nested")
    add("nested-10000-arrays-in-batch-sample", b'{"samples":[' + head + b',"x":' + arrays + b"}]}", WHOLE, "nested")
    add("nested-10000-arrays-as-samples", b'{"samples":' + arrays + b"}", WHOLE, "nested")
    mp_head = b"\x83\xa3seq\x01\xa2ts" + mp(GOOD_TS) + b"\xa1x"
    add(
        "msgpack-nested-200000-arrays-in-unknown-field",
        mp_head + b"\x91" * 200_000 + b"\xc0",
        WHOLE,
        "nested",
        content_type=MSGPACK,
    )
    add(
        "msgpack-nested-60000-maps-in-unknown-field",
        mp_head + b"\x81\xa1a" * 60_000 + b"\xc0",
        WHOLE,
        "nested",
        content_type=MSGPACK,
    )
    add("nested-100-arrays-in-unknown-field-accepted", head + b',"x":' + b"[" * 100 + b"]" * 100 + b"}", OK)


def names() -> None:
    bad_names = {
        "umlaut": "temp\u00e9rature",
        "nul": "fu\x00el",
        "trailing-newline": "fuel\n",
        "uppercase": "Fuel",
        "empty": "",
        "emoji": "fuel\U0001f69b",
        "rtl-override": "fuel\u202e",
        "zero-width-space": "fu\u200bel",
        "leading-digit": "1fuel",
        "space": "engine temp",
    }
    for name, metric in bad_names.items():
        add(f"metric-name-{name}", js(sample(metrics={metric: 500})), SAMPLE, "at `key` in `$.metrics`")
    add(
        "agg-name-trailing-newline",
        js(sample(agg={"flow\n": {"min": 1, "max": 2, "avg": 1.5, "count": 3}})),
        SAMPLE,
        "at `key` in `$.agg`",
    )
    add("metric-name-lone-surrogate", js(sample())[:-1] + b',"metrics":{"\\udc00":1}}', WHOLE, NOT_JSON)


def incompressible_id(length: int) -> str:
    """Random letters, some beyond ASCII: unlike "x" * n, PostgreSQL cannot compress it into an index row."""
    rng = random.Random(length)
    return "".join(rng.choice(string.ascii_letters + string.digits + "äöüßéø€") for _ in range(length))


def topic_cases() -> None:
    payload = js(sample(metrics={"fuel": 50}))
    topics: list[tuple[str, str, Outcome, str, bool]] = [
        ("topic-device-id-umlaut", "fleet/v1/tr\u00fcck/telemetry", WHOLE, "does not match", True),
        ("topic-device-id-nul", "fleet/v1/a\x00b/telemetry", WHOLE, "does not match", False),
        ("topic-device-id-dot-dot", "fleet/v1/../telemetry", WHOLE, "does not match", True),
        ("topic-device-id-wildcard-plus", "fleet/v1/+/telemetry", WHOLE, "does not match", False),
        ("topic-device-id-wildcard-hash", "fleet/v1/#/telemetry", WHOLE, "does not match", False),
        ("topic-device-id-64-chars-accepted", f"fleet/v1/{'d' * 64}/telemetry", OK, "", True),
        ("topic-device-id-65-chars", f"fleet/v1/{'d' * 65}/telemetry", WHOLE, "does not match", True),
        ("topic-device-id-10000-chars", f"fleet/v1/{'x' * 10_000}/telemetry", WHOLE, "does not match", True),
        (
            "topic-device-id-4000-random-chars",
            f"fleet/v1/{incompressible_id(4000)}/telemetry",
            WHOLE,
            "does not match",
            True,
        ),
        ("topic-device-id-empty", "fleet/v1//telemetry", WHOLE, "does not match", True),
        ("topic-trailing-slash", "fleet/v1/dev-1/telemetry/", WHOLE, "unknown topic kind", False),
        ("topic-device-id-trailing-newline", "fleet/v1/dev-1\n/telemetry", WHOLE, "does not match", False),
        ("topic-device-id-del", "fleet/v1/dev\x7f1/telemetry", WHOLE, "does not match", False),
        ("topic-device-id-lone-surrogate", "fleet/v1/dev\udc801/telemetry", WHOLE, "does not match", False),
        ("topic-device-id-space", "fleet/v1/dev 1/telemetry", WHOLE, "does not match", True),
        ("topic-device-id-emoji", "fleet/v1/\U0001f69b/telemetry", WHOLE, "does not match", True),
        ("topic-device-id-zero-width-space", "fleet/v1/dev\u200b1/telemetry", WHOLE, "does not match", True),
        ("topic-device-id-leading-dash", "fleet/v1/-dev/telemetry", WHOLE, "does not match", True),
        ("topic-device-id-dollar", "fleet/v1/$dev/telemetry", WHOLE, "does not match", True),
        ("topic-wrong-version", "fleet/v2/dev-1/telemetry", WHOLE, "is not under fleet/v1/", False),
        ("topic-wrong-kind", "fleet/v1/dev-1/persisted", WHOLE, "does not ingest", False),
        ("topic-empty", "", WHOLE, "is not under fleet/v1/", False),
    ]
    for name, topic, outcome, reason, mqtt in topics:
        add(name, payload, outcome, reason, topic=topic, mqtt=mqtt, **({"accepted": 1} if outcome is OK else {}))


def timestamps() -> None:
    future, older = "in the future", "older than the retention"
    add("ts-year-2100", js(sample(ts="2100-01-01T00:00:00Z")), SAMPLE, future)
    add("ts-year-9999", js(sample(ts="9999-12-31T23:59:59Z")), SAMPLE, future)
    add("ts-year-9999-minus-offset", js(sample(ts="9999-12-31T23:59:59-23:59")), SAMPLE, future)
    add("ts-year-0001", js(sample(ts="0001-01-01T00:00:00Z")), SAMPLE, older)
    add("ts-year-0001-plus-offset", js(sample(ts="0001-01-01T00:00:00+01:00")), SAMPLE, older)
    add("ts-year-1900", js(sample(ts="1900-01-01T00:00:00Z")), SAMPLE, older)
    add("ts-year-10000", js(sample(ts="10000-01-01T00:00:00Z")), SAMPLE, "Invalid RFC3339")
    skew = LIMITS.future_skew + timedelta(seconds=1)
    add("ts-just-beyond-future-skew", js(sample(ts=ts_at(skew))), SAMPLE, future, corpus_clock=True)
    add("ts-within-future-skew-accepted", js(sample(ts=ts_at(timedelta(minutes=4)))), OK)
    age = LIMITS.max_age + timedelta(seconds=1)
    add("ts-just-older-than-retention", js(sample(ts=ts_at(-age))), SAMPLE, older, corpus_clock=True)
    add("ts-without-timezone", js(sample(ts="2026-11-25T11:59:00")), SAMPLE, "at `$.ts`")
    add("ts-date-only", js(sample(ts="2026-11-25")), SAMPLE, "at `$.ts`")
    add("ts-february-30", js(sample(ts="2026-02-30T00:00:00Z")), SAMPLE, "Invalid RFC3339")
    add("ts-month-13", js(sample(ts="2026-13-01T00:00:00Z")), SAMPLE, "Invalid RFC3339")
    add("ts-hour-25", js(sample(ts="2026-11-25T25:00:00Z")), SAMPLE, "Invalid RFC3339")
    add("ts-leap-second", js(sample(ts="2026-06-30T23:59:60Z")), SAMPLE, "Invalid RFC3339")
    add("ts-offset-24-hours", js(sample(ts="2026-11-25T11:59:00+24:00")), SAMPLE, "Invalid RFC3339")
    add("ts-empty-string", js(sample(ts="")), SAMPLE, "at `$.ts`")
    add("ts-unix-seconds-as-string", js(sample(ts=str(GOOD_EPOCH_S))), SAMPLE, "at `$.ts`")
    add("ts-nanoseconds-accepted", js(sample(ts="2026-11-25T11:59:00.123456789Z")), OK)
    add("ts-lowercase-and-space-accepted", js(sample(ts="2026-11-25 11:59:00z")), OK)
    add(
        "ts-msgpack-ext-year-2500",
        msgpack_sample_with_ts(msgpack_ext_ts(int(datetime(2500, 1, 1, tzinfo=UTC).timestamp()))),
        SAMPLE,
        future,
        content_type=MSGPACK,
    )
    add(
        "ts-msgpack-ext-before-1970",
        msgpack_sample_with_ts(msgpack_ext_ts(-300_000_000)),
        SAMPLE,
        older,
        content_type=MSGPACK,
    )
    add(
        "ts-msgpack-ext-nanoseconds-overflow",
        msgpack_sample_with_ts(msgpack_ext_ts(GOOD_EPOCH_S, 2_000_000_000)),
        SAMPLE,
        "nanoseconds out of range",
        content_type=MSGPACK,
    )
    add(
        "ts-msgpack-ext-seconds-2-pow-62",
        msgpack_sample_with_ts(msgpack_ext_ts(2**62)),
        SAMPLE,
        "out of range",
        content_type=MSGPACK,
    )
    add("ts-msgpack-ext-accepted", msgpack_sample_with_ts(msgpack_ext_ts(GOOD_EPOCH_S)), OK, content_type=MSGPACK)
    add("ts-epoch-milliseconds-accepted", js(sample(ts=GOOD_EPOCH_MS + 123)), OK)
    add("ts-epoch-milliseconds-fractional", js(sample(ts=GOOD_EPOCH_MS + 0.5)), SAMPLE, "at `$.ts`")
    add("ts-epoch-milliseconds-negative", js(sample(ts=-GOOD_EPOCH_MS)), SAMPLE, "not Unix epoch milliseconds")
    add("ts-epoch-milliseconds-2-pow-63", js(sample(ts=2**63 - 1)), SAMPLE, "beyond year 9999")


def sensor_format() -> None:
    reading = {"sensorId": "temperature", "timestamp": GOOD_EPOCH_MS, "value": 20.5, "unit": "°C", "quality": 90}
    summary = {"sensorId": "flow", "timestamp": GOOD_TS, "min": 1, "max": 3, "avg": 2, "count": 50, "stdDev": 0.4}
    add("sensor-reading-accepted", js(reading), OK)
    add("sensor-aggregate-accepted", js(summary), OK)
    add("sensor-array-accepted", js([reading, summary]), OK, accepted=2)
    add("sensor-array-msgpack-accepted", mp([reading, summary]), OK, accepted=2, content_type=MSGPACK)
    add("sensor-unit-mismatch", js({**reading, "unit": "K"}), SAMPLE, "is not temperature's unit")
    add("sensor-id-of-another-device", js({**reading, "sensorId": "t2.temperature"}), SAMPLE, "names no metric")
    add("sensor-value-and-aggregate", js({**summary, "value": 1}), SAMPLE, "not both")
    add(
        "sensor-array-one-bad",
        js([reading, {**reading, "value": "hot"}]),
        SAMPLE,
        "at `$.value`",
        rejected=[1],
        accepted=1,
    )
    add("sensor-array-empty-objects", js([{"sensorId": "x"}, {}]), SAMPLE, "invalid sensor reading", rejected=[0, 1])


def batches_and_keys() -> None:
    add(
        "batch-empty-accepted",
        js({"samples": []}),
        OK,
        accepted=0,
        note="an empty backlog stores nothing and refuses nothing",
    )
    add("batch-samples-is-number", js({"samples": 5}), WHOLE, NOT_JSON)
    add("batch-samples-is-object", js({"samples": {"0": sample()}}), WHOLE, NOT_JSON)
    add("batch-samples-is-null", js({"samples": None}), SAMPLE, "missing required field `seq`")
    add("batch-of-non-objects", js({"samples": [5, None, "x", []]}), SAMPLE, "Expected `object`", rejected=[0, 1, 2, 3])
    add(
        "batch-mixed-valid-and-invalid",
        js(
            {
                "samples": [
                    sample(1, metrics={"fuel": 10}),
                    sample(2, metrics={"fuel": 101}),
                    sample(3),
                    sample(4, pos={"lat": 91, "lon": 0}),
                    sample(5, metrics={"level": 50}),
                ]
            }
        ),
        SAMPLE,
        "",
        rejected=[1, 3],
        accepted=3,
    )
    add("batch-with-sample-fields-beside-it", js({**sample(99), "samples": [sample(1), sample(2)]}), OK, accepted=2)
    add(
        "batch-escaped-samples-key",
        js({"samples": [sample(1), sample(2)]}).replace(b'"samples"', b'"\\u0073amples"'),
        OK,
        accepted=2,
    )
    add("batch-nested-batch", js({"samples": [{"samples": [sample(1)]}]}), SAMPLE, "missing required field `seq`")
    add(
        "batch-duplicate-samples-key-last-wins",
        b'{"samples":[%s],"samples":[%s,%s]}' % (js(sample(1)), js(sample(2)), js(sample(3))),
        OK,
        accepted=2,
    )
    add("duplicate-seq-key-last-wins", b'{"seq":1,"seq":2,"ts":"%s"}' % GOOD_TS.encode(), OK)
    add(
        "duplicate-metric-key-last-valid",
        b'{"seq":1,"ts":"%s","metrics":{"fuel":500,"fuel":10}}' % GOOD_TS.encode(),
        OK,
    )
    add(
        "duplicate-metric-key-last-invalid",
        b'{"seq":1,"ts":"%s","metrics":{"fuel":10,"fuel":500}}' % GOOD_TS.encode(),
        SAMPLE,
        "fuel=500",
    )
    add(
        "duplicate-ts-key-last-invalid", b'{"seq":1,"ts":"%s","ts":"yesterday"}' % GOOD_TS.encode(), SAMPLE, "at `$.ts`"
    )
    add(
        "unknown-fields-accepted",
        js(sample(firmware="9.9", pos={"lat": 1, "lon": 2, "hdop": 0.8}, extra={"a": [1, {"b": None}]})),
        OK,
    )


def main() -> None:
    for build in (
        invalid_json,
        wrong_types,
        out_of_range,
        non_finite,
        huge,
        deeply_nested,
        names,
        topic_cases,
        timestamps,
        sensor_format,
        batches_and_keys,
    ):
        build()
    names_seen = [case.name for case in cases]
    duplicates = {name for name in names_seen if names_seen.count(name) > 1}
    if duplicates:
        raise SystemExit(f"duplicate case names: {sorted(duplicates)}")
    TELEMETRY_DIR.mkdir(parents=True, exist_ok=True)
    for old in TELEMETRY_DIR.iterdir():
        if old.name != CASES_FILE.name and old.name not in names_seen:
            old.unlink()
    for case in cases:
        (TELEMETRY_DIR / case.name).write_bytes(case.payload)
    index = {case.name: entry(case) for case in sorted(cases, key=lambda c: c.name)}
    # ensure_ascii: topics with NUL, lone surrogates and the like survive as \u escapes.
    CASES_FILE.write_text(json.dumps(index, indent=1, ensure_ascii=True) + "\n", encoding="utf-8")
    print(f"wrote {len(cases)} cases to {TELEMETRY_DIR}")


if __name__ == "__main__":
    main()
