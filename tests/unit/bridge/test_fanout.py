"""Replies to devices: persisted ranges per device and rejection notices."""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime

import msgspec

from bridge.decode import Decoded, Rejection
from bridge.fanout import persisted_messages, rejected_messages
from models.state import Persisted, PersistedRange, RejectedNotice

NOW = datetime(2026, 11, 25, tzinfo=UTC)


def decoded(device: str, keys: list[tuple[int, int]]) -> Decoded:
    item = Decoded(device, f"fleet/v1/{device}/telemetry", b"{}", NOW)
    item.keys.extend(keys)
    item.rows.extend([()] * len(keys))
    return item


def test_persisted_is_one_message_per_device_with_coalesced_ranges() -> None:
    out = persisted_messages(
        [decoded("a", [(0, 1), (0, 2)]), decoded("b", [(0, 9)]), decoded("a", [(0, 3), (1, 0)])], NOW
    )
    by_topic = {topic: msgspec.json.decode(payload, type=Persisted) for topic, payload in out}
    assert set(by_topic) == {"fleet/v1/a/persisted", "fleet/v1/b/persisted"}
    assert by_topic["fleet/v1/a/persisted"].ranges == [PersistedRange(0, 1, 3), PersistedRange(1, 0, 0)]
    assert by_topic["fleet/v1/b/persisted"].ranges == [PersistedRange(0, 9, 9)]


def test_persisted_wire_format_is_boot_first_last_triples() -> None:
    ((_, payload),) = persisted_messages([decoded("a", [(0, 5), (0, 6)])], NOW)
    assert msgspec.json.decode(payload)["ranges"] == [[0, 5, 6]]


def test_rejected_goes_to_the_sending_device_with_reason_and_seq() -> None:
    item = Decoded("a", "fleet/v1/a/telemetry", b"x", NOW)
    item.rejections.append(Rejection("fleet/v1/a/telemetry", "a", "metric fuel=500", b"x", NOW, 2, 17, 0))
    orphan = Decoded(None, "fleet/v1/+/telemetry", b"x", NOW)
    orphan.rejections.append(Rejection("fleet/v1/+/telemetry", None, "bad topic", b"x", NOW))
    ((topic, payload),) = rejected_messages([item, orphan])
    notice = msgspec.json.decode(payload, type=RejectedNotice)
    assert topic == "fleet/v1/a/rejected"
    assert (notice.reason, notice.index, notice.seq) == ("metric fuel=500", 2, 17)


def test_rejected_names_the_refused_payload_by_its_sha256() -> None:
    # A message refused whole has no readable seq: the digest is what lets the device match the notice.
    item = Decoded("a", "fleet/v1/a/telemetry", b"{not json", NOW)
    item.rejections.append(Rejection("fleet/v1/a/telemetry", "a", "not valid JSON", b"{not json", NOW))
    ((_, payload),) = rejected_messages([item])
    notice = msgspec.json.decode(payload, type=RejectedNotice)
    assert notice.sha256 == hashlib.sha256(b"{not json").hexdigest()
    assert notice.seq is None
