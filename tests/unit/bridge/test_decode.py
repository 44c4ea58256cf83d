"""The decode stage: rows for PostgreSQL, state updates for Redis, rejections for the dead-letter table."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import msgspec

from bridge.decode import (
    PAYLOAD_FORMAT_INVALID,
    TELEMETRY_COLUMNS,
    coalesce,
    decode_message,
)
from bridge.message import RawMessage
from models.state import decode_field
from models.telemetry import Limits

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)


def message(payload: object, topic: str = "fleet/v1/t1/telemetry") -> RawMessage:
    data = payload if isinstance(payload, bytes) else msgspec.json.encode(payload)
    return RawMessage(topic=topic, payload=data, content_type=None, received_at=NOW)


def test_decode_maps_known_metrics_to_columns_and_others_to_extra() -> None:
    sample = {
        "seq": 7,
        "ts": NOW.isoformat(),
        "boot": 2,
        "pos": {"lat": 1.5, "lon": 2.5, "speed": 30, "heading": 90},
        "metrics": {"fuel": 40, "engine_temp": 88, "rpm": 1500},
        "quality": 90,
    }
    decoded = decode_message(message(sample), now=NOW, limits=Limits())
    (row,) = decoded.rows
    columns = dict(zip(TELEMETRY_COLUMNS, row, strict=True))
    assert columns["device_id"] == "t1"
    assert columns["seq"] == 7
    assert columns["boot"] == 2
    assert (columns["lat"], columns["lon"], columns["speed"], columns["heading"]) == (1.5, 2.5, 30, 90)
    assert (columns["fuel"], columns["engine_temp"]) == (40, 88)
    assert columns["extra"] == {"rpm": 1500}
    assert columns["received_at"] == NOW
    assert decoded.keys == [(2, 7)]
    assert decoded.readings == 4


def test_decode_refuses_topics_outside_the_grammar_with_the_reason() -> None:
    decoded = decode_message(message({"seq": 1}, topic="fleet/v1/+bad/telemetry"), now=NOW, limits=Limits())
    assert decoded.refused_whole
    assert decoded.device_id is None
    assert "does not match" in decoded.rejections[0].reason


def test_decode_refuses_unparseable_payload_whole_and_keeps_it() -> None:
    decoded = decode_message(message(b"\xff\xfe not json"), now=NOW, limits=Limits())
    assert decoded.refused_whole
    assert decoded.rejections[0].payload == b"\xff\xfe not json"
    assert PAYLOAD_FORMAT_INVALID == 0x99


def test_coalesce_encodes_state_fields_with_time_and_sequence() -> None:
    sample = {"seq": 3, "ts": NOW.isoformat(), "metrics": {"fuel": 12.5}}
    decoded = decode_message(message(sample), now=NOW, limits=Limits())
    merged = coalesce([decoded])
    order, encoded = merged["t1"]["m.fuel"]
    assert order == (int(NOW.timestamp() * 1000), 0, 3)
    field = decode_field(encoded)
    assert (field.value, field.ts, field.seq) == (12.5, NOW, 3)


def test_coalesce_keeps_the_newest_value_per_field_regardless_of_arrival_order() -> None:
    newer = {"seq": 2, "ts": NOW.isoformat(), "pos": {"lat": 2, "lon": 2}, "metrics": {"fuel": 20}}
    older = {"seq": 1, "ts": (NOW - timedelta(seconds=5)).isoformat(), "metrics": {"fuel": 10, "level": 70}}
    batch = [decode_message(message(p), now=NOW, limits=Limits()) for p in (newer, older)]
    merged = coalesce(batch)["t1"]
    assert decode_field(merged["m.fuel"][1]).value == 20
    assert decode_field(merged["pos"][1]).value == {
        "lat": 2.0,
        "lon": 2.0,
        "alt": None,
        "speed": None,
        "heading": None,
        "accuracy": None,
    }
    assert decode_field(merged["m.level"][1]).value == 70  # only the older sample had it
    assert merged["m.level"][0][2] == 1


def test_decode_reads_status_as_presence_and_ignores_a_cleared_status() -> None:
    online = decode_message(message(b'{"state": "online"}', topic="fleet/v1/t1/status"), now=NOW, limits=Limits())
    assert online.presence is not None
    assert (online.presence.state, online.presence.source, online.presence.since) == ("online", "status", NOW)
    plain = decode_message(message(b"offline", topic="fleet/v1/t1/status"), now=NOW, limits=Limits())
    assert plain.presence is not None
    assert plain.presence.state == "offline"
    cleared = decode_message(message(b"", topic="fleet/v1/t1/status"), now=NOW, limits=Limits())
    assert (cleared.presence, cleared.rejections, cleared.refused_whole) == (None, [], False)
    bad = decode_message(message(b'{"state": "asleep"}', topic="fleet/v1/t1/status"), now=NOW, limits=Limits())
    assert bad.refused_whole
    assert "invalid status" in bad.rejections[0].reason


def test_decode_maps_field_sensor_readings_onto_the_topics_device() -> None:
    payload = [
        {"sensorId": "t1.fuel", "timestamp": NOW.isoformat(), "value": 40, "unit": "%"},
        {
            "sensorId": "vibration",
            "timestamp": NOW.isoformat(),
            "min": 1,
            "max": 3,
            "avg": 2,
            "count": 9,
            "stdDev": 0.5,
        },
        {"sensorId": "t2.fuel", "timestamp": NOW.isoformat(), "value": 41},
    ]
    decoded = decode_message(message(payload), now=NOW, limits=Limits())
    rows = [dict(zip(TELEMETRY_COLUMNS, row, strict=True)) for row in decoded.rows]
    assert [row["device_id"] for row in rows] == ["t1", "t1"]
    assert rows[0]["fuel"] == 40
    assert rows[1]["agg"] == {"vibration": [1, 3, 2, 9, 0.5]}
    (refused,) = decoded.rejections
    assert refused.index == 2
    assert "names no metric of this device" in refused.reason
