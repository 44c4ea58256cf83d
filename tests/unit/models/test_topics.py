"""The topic grammar."""

from __future__ import annotations

import pytest

from models import topics
from models.topics import TopicKind


def test_parse_reads_device_and_kind() -> None:
    parsed = topics.parse("fleet/v1/truck-0001/telemetry")
    assert parsed.device_id == "truck-0001"
    assert parsed.kind is TopicKind.TELEMETRY
    assert str(parsed) == "fleet/v1/truck-0001/telemetry"


def test_parse_reads_two_segment_kinds() -> None:
    assert topics.parse("fleet/v1/t1/cmd/ack").kind is TopicKind.CMD_ACK


@pytest.mark.parametrize(
    "topic",
    [
        "fleet/v2/t1/telemetry",
        "fleet/v1/-bad/telemetry",
        "fleet/v1/t\u00e9/telemetry",
        "fleet/v1/t1/unknown",
        "fleet/v1/t1",
        "fleet/v1/" + "x" * 65 + "/telemetry",
    ],
)
def test_parse_refuses_topics_outside_the_grammar(topic: str) -> None:
    with pytest.raises(topics.TopicError):
        topics.parse(topic)


def test_shared_subscription_filter() -> None:
    assert topics.shared(TopicKind.TELEMETRY) == "$share/fleetbridge/fleet/v1/+/telemetry"
