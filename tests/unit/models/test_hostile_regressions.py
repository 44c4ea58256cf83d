"""Bugs the hostile corpus and the property tests found, one test each, so they stay fixed."""

from __future__ import annotations

from datetime import UTC, datetime

import msgspec
import pytest

from bridge.decode import DEAD_LETTER_TOPIC_MAX_CHARS, decode_message
from bridge.message import RawMessage
from models import topics
from models.telemetry import DecodedTelemetry, Limits, MessageRejection, decode_telemetry

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
TS_TEXT = "2026-11-25T11:59:00Z"
TS = f'"{TS_TEXT}"'.encode()
MSGPACK = "application/msgpack"
# The btree row limit of the dead-letter table's unique index, less its other key columns.
BTREE_TOPIC_BYTES_MAX = 2704 - 32 - 4 - 64


def decode(payload: bytes, content_type: str | None = None) -> DecodedTelemetry | MessageRejection:
    return decode_telemetry(payload, content_type=content_type, now=NOW, limits=Limits())


@pytest.mark.parametrize(
    ("payload", "content_type"),
    [
        (b'{"seq":1,"ts":' + TS + b',"x":' + b"[" * 10_000 + b"]" * 10_000 + b"}", None),
        (b'{"seq":1,"ts":' + TS + b',"metrics":' + b"[" * 10_000 + b"]" * 10_000 + b"}", None),
        (b'{"samples":[{"x":' + b"[" * 10_000 + b"]" * 10_000 + b"}]}", None),
        (b"\x83\xa3seq\x01\xa2ts" + msgspec.msgpack.encode(TS_TEXT) + b"\xa1x" + b"\x91" * 200_000 + b"\xc0", MSGPACK),
    ],
    ids=["json-unknown-field", "json-metrics", "json-batch", "msgpack-unknown-field"],
)
def test_decode_refuses_deeply_nested_payload_instead_of_raising(payload: bytes, content_type: str | None) -> None:
    # Before: msgspec's RecursionError escaped decode_telemetry, and with it the bridge's handler.
    result = decode(payload, content_type)
    assert isinstance(result, MessageRejection)
    assert "nested too deeply" in result.reason


@pytest.mark.parametrize(
    ("payload", "content_type"),
    [
        (b'{"seq":1,"ts":' + TS + b',"metrics":{"fu\xe9l":50}}', None),
        (b'{"seq":1,"ts":' + TS + b',"agg":{"\xff":{"min":1,"max":2,"avg":1.5,"count":3}}}', None),
        (b"\x83\xa3seq\x01\xa2ts" + msgspec.msgpack.encode(TS_TEXT) + b"\xa7metrics\x81\xa4fu\xe9l\x01", MSGPACK),
    ],
    ids=["json-metric", "json-aggregate", "msgpack-metric"],
)
def test_decode_refuses_invalid_utf8_in_a_key_instead_of_raising(payload: bytes, content_type: str | None) -> None:
    # Before: msgspec's UnicodeDecodeError (not a DecodeError) escaped decode_telemetry. The behaviour is
    # what counts (refused whole, with a reason naming the format), not the decoder's own wording.
    result = decode(payload, content_type)
    assert isinstance(result, MessageRejection)
    expected_format = "MessagePack" if content_type == "application/msgpack" else "JSON"
    assert result.reason.startswith(f"not valid {expected_format} telemetry: ")
    assert len(result.reason) > len(f"not valid {expected_format} telemetry: ")


@pytest.mark.parametrize("field", ["metrics", "agg"])
def test_decode_refuses_metric_name_with_trailing_newline(field: str) -> None:
    # Before: `$` matched before the newline, so "fuel\n": 500 was stored, past fuel's 0…100 range.
    value: object = 500 if field == "metrics" else {"min": 1, "max": 500, "avg": 2, "count": 3}
    result = decode(msgspec.json.encode({"seq": 1, "ts": TS_TEXT, field: {"fuel\n": value}}))
    assert isinstance(result, DecodedTelemetry)
    assert result.samples == []
    assert [r.index for r in result.rejections] == [0]


def test_device_id_with_trailing_newline_is_not_a_device_id() -> None:
    # Before: `re.match` with `^…$` accepted "t1\n" as a device id, and the topic parsed.
    assert not topics.is_device_id("t1\n")
    with pytest.raises(topics.TopicError):
        topics.parse("fleet/v1/t1\n/telemetry")
    assert topics.is_device_id("t1")


@pytest.mark.parametrize(
    ("seq", "reported"),
    [(2**63, None), (2**64 - 1, None), (2**64 + 1, None), (-(2**63) - 1, None), (-1, -1), (-(2**63), -(2**63))],
)
def test_refusal_reports_only_a_seq_the_database_can_store(seq: int, reported: int | None) -> None:
    # Before: the probed seq 2**64 - 1 went to rejected_messages.seq (bigint); PostgreSQL refused the
    # dead letter itself, and the bridge retried that batch forever.
    for payload, content_type in [(msgspec.json.encode({"seq": seq, "ts": 5}), None)] + (
        [(msgspec.msgpack.encode({"seq": seq, "ts": 5}), MSGPACK)] if -(2**63) <= seq < 2**64 else []
    ):
        result = decode(payload, content_type)
        assert isinstance(result, DecodedTelemetry)
        assert [(r.index, r.seq) for r in result.rejections] == [(0, reported)]


@pytest.mark.parametrize("payload", [b"null", b"[1, 2]", b'["samples"]', b"42", b'"text"', b"true"])
def test_message_that_is_not_an_object_is_refused_whole_whatever_its_bytes_contain(payload: bytes) -> None:
    # Before: the single-sample fast path made `[1, 2]` a refused sample but `["samples"]` a refused message.
    result = decode(payload)
    assert isinstance(result, MessageRejection)
    assert "Expected `object`" in result.reason


def test_batch_whose_key_is_spelled_with_escapes_is_a_batch() -> None:
    # Before: no b"samples" in the bytes sent it down the single-sample path, which refused it.
    result = decode(b'{"\\u0073amples":[{"seq":1,"ts":' + TS + b'},{"seq":2,"ts":' + TS + b"}]}")
    assert isinstance(result, DecodedTelemetry)
    assert [s.seq for s in result.samples] == [1, 2]
    assert result.rejections == []


def test_refused_topic_is_cut_to_what_the_dead_letter_index_can_hold() -> None:
    # Before: a 4000-character topic went whole into rejected_messages' unique index; PostgreSQL
    # refused the row (index row size exceeds btree maximum 2704), and the bridge retried forever.
    stored = set()
    for tail in ("a", "b"):
        topic = f"fleet/v1/{'ü' * 4000}{tail}/telemetry"
        decoded = decode_message(RawMessage(topic, b"{}", None, NOW), now=NOW, limits=Limits())
        (rejection,) = decoded.rejections
        assert len(rejection.topic) <= DEAD_LETTER_TOPIC_MAX_CHARS
        assert len(rejection.topic.encode()) <= BTREE_TOPIC_BYTES_MAX
        assert decoded.topic == rejection.topic
        assert f"{len(topic)} characters" in rejection.topic
        stored.add(rejection.topic)
    assert len(stored) == 2  # still told apart, so neither is taken for a redelivery of the other
    short = "fleet/v1/bad id/telemetry"
    decoded = decode_message(RawMessage(short, b"{}", None, NOW), now=NOW, limits=Limits())
    assert decoded.rejections[0].topic == short


def test_status_nested_too_deeply_is_refused_instead_of_raising() -> None:
    # Before: msgspec's RecursionError escaped the status (presence) path of decode_message.
    payload = b'{"state":"online","x":' + b"[" * 10_000 + b"]" * 10_000 + b"}"
    decoded = decode_message(RawMessage("fleet/v1/t1/status", payload, None, NOW), now=NOW, limits=Limits())
    assert decoded.refused_whole
    assert "nested too deeply" in decoded.rejections[0].reason


def test_decode_names_no_boot_for_a_refusal_the_dead_letter_column_cannot_hold() -> None:
    # Before: the refused sample's boot 2**31 went into the dead letter's integer `boot` column, and the
    # database refused the dead letter itself.
    result = decode(b'{"seq":1,"ts":' + TS + b',"boot":2147483648}')
    assert isinstance(result, DecodedTelemetry)
    (refused,) = result.rejections
    assert (refused.seq, refused.boot) == (1, None)
