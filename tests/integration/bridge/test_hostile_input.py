"""The hostile corpus through the real stack: Mosquitto -> bridge -> PostgreSQL, interleaved with good traffic.

Every good sample is stored exactly once; every bad message, and every bad sample of a mixed batch, is in
`rejected_messages` with a reason, one row each; the bridge keeps running and counts what it refused.
Topic tricks Mosquitto refuses (wildcards, control characters) are covered at the decode level instead
(`tests/unit/models/test_hostile_corpus.py`).
"""

from __future__ import annotations

import asyncio
import hashlib
import random
from collections import Counter
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import aiomqtt
import msgspec
import psycopg
import pytest
from paho.mqtt.packettypes import PacketTypes
from paho.mqtt.properties import Properties

from config import Settings
from tests.corpus import Case, Outcome, load_cases
from tests.integration.bridge.conftest import bridge_stats, running_bridge
from tests.integration.bridge.test_pipeline import broker, wait_committed

pytestmark = pytest.mark.integration

GOOD_DEVICES = 5
GOOD_PER_DEVICE = 60
EXTRA_BAD = 40
PUBLISH_WINDOW = 100
# The corpus is dated 2026-11-25: a retention reaching back ten years keeps its valid samples valid.
RETENTION_DAYS = 3650
TOPIC_KEY_CHARS = 400  # a refused topic longer than this is stored cut, behind the same prefix


class Publication(msgspec.Struct, frozen=True):
    """One message to publish, and what it must leave in the database."""

    topic: str
    payload: bytes
    content_type: str | None = None
    stored: int = 0  # telemetry rows it adds
    refused: tuple[int, ...] = ()  # sample indexes it adds to rejected_messages (-1: the whole message)


def from_case(case: Case, n: int) -> Publication:
    topic = case.topic if case.topic is not None else f"fleet/v1/corpus-{n:03d}/telemetry"
    refused = (-1,) if case.outcome is Outcome.REJECTED_WHOLE else case.rejected
    return Publication(topic, case.payload, case.content_type, case.accepted, refused)


def good_samples(now: datetime) -> list[Publication]:
    out = []
    for device in range(GOOD_DEVICES):
        for seq in range(GOOD_PER_DEVICE):
            sample: dict[str, Any] = {
                "seq": seq,
                "ts": (now - timedelta(seconds=GOOD_PER_DEVICE - seq)).isoformat(),
                "pos": {"lat": 52.0 + seq / 1000, "lon": 4.0 + device / 10, "speed": 40.0},
                "metrics": {"fuel": 80 - seq / 10, "engine_temp": 90.0, "rpm": 1500 + seq},
            }
            msgpack = seq % 3 == 0
            payload = msgspec.msgpack.encode(sample) if msgpack else msgspec.json.encode(sample)
            out.append(
                Publication(
                    f"fleet/v1/good-{device}/telemetry", payload, "application/msgpack" if msgpack else None, stored=1
                )
            )
    return out


def extra_bad(now: datetime) -> list[Publication]:
    """Distinct out-of-range samples from one device: each a row of its own, none deduplicated."""
    return [
        Publication(
            "fleet/v1/hostile-range/telemetry",
            msgspec.json.encode({"seq": n, "ts": now.isoformat(), "metrics": {"fuel": 101 + n}}),
            refused=(0,),
        )
        for n in range(EXTRA_BAD)
    ]


async def publish_all(client: aiomqtt.Client, publications: list[Publication]) -> None:
    """QoS 1, a window at a time: the bridge acknowledges only after COMMIT, so one by one would crawl."""
    for start in range(0, len(publications), PUBLISH_WINDOW):
        window = publications[start : start + PUBLISH_WINDOW]
        await asyncio.gather(*(publish(client, p) for p in window))


async def publish(client: aiomqtt.Client, publication: Publication) -> None:
    properties = None
    if publication.content_type is not None:
        properties = Properties(PacketTypes.PUBLISH)  # type: ignore[no-untyped-call]
        properties.ContentType = publication.content_type
    await client.publish(publication.topic, publication.payload, qos=1, properties=properties, timeout=30)


def refusal_key(topic: str, payload: bytes, index: int) -> tuple[str, bytes, int]:
    return topic[:TOPIC_KEY_CHARS], hashlib.sha256(payload).digest(), index


async def test_bridge_stores_good_traffic_and_dead_letters_the_hostile_corpus(bridge_settings: Settings) -> None:
    settings = replace(bridge_settings, database=replace(bridge_settings.database, retention_days=RETENTION_DAYS))
    host, port = broker(settings.mqtt.url)
    now = datetime.now(UTC).replace(microsecond=0)
    cases = [case for case in load_cases() if case.mqtt and not case.corpus_clock]
    bad = [from_case(case, n) for n, case in enumerate(cases)] + extra_bad(now)
    good = good_samples(now)
    traffic = bad + good
    random.Random(7).shuffle(traffic)
    expected_refusals = Counter(refusal_key(p.topic, p.payload, i) for p in bad for i in p.refused)
    assert len(bad) >= 200
    assert sum(expected_refusals.values()) >= 200

    async with (
        running_bridge(settings) as bridge,
        aiomqtt.Client(host, port, protocol=aiomqtt.ProtocolVersion.V5, max_inflight_messages=PUBLISH_WINDOW) as device,
    ):
        await publish_all(device, traffic)
        await wait_committed(bridge, len(traffic), limit_s=60)
        # Still running and still ingesting after all of it.
        last = Publication("fleet/v1/good-0/telemetry", msgspec.json.encode({"seq": 10_000, "ts": now.isoformat()}))
        await publish(device, last)
        await wait_committed(bridge, len(traffic) + 1)
        stats = bridge.stats
        assert stats.rejected == sum(expected_refusals.values())
        assert stats.refused_by_database == 0
        assert stats.committed_samples == sum(p.stored for p in traffic) + 1
        deadline = asyncio.get_running_loop().time() + 5
        while (published := await bridge_stats(settings.redis.url, settings.mqtt.client_id)).get("rejected") != str(
            stats.rejected
        ):
            assert asyncio.get_running_loop().time() < deadline, published
            await asyncio.sleep(0.1)

    with psycopg.connect(settings.database.url) as conn:
        stored_good = conn.execute(
            "SELECT device_id, seq, count(*) FROM telemetry WHERE device_id LIKE 'good-%' GROUP BY 1, 2"
        ).fetchall()
        assert all(count == 1 for _, _, count in stored_good)
        assert {(d, s) for d, s, _ in stored_good} == {
            *((f"good-{d}", s) for d in range(GOOD_DEVICES) for s in range(GOOD_PER_DEVICE)),
            ("good-0", 10_000),
        }
        (total,) = conn.execute("SELECT count(*) FROM telemetry").fetchone() or (0,)
        assert total == sum(p.stored for p in traffic) + 1
        rows = conn.execute("SELECT topic, payload_sha256, sample_index, reason FROM rejected_messages").fetchall()
    assert all(reason.strip() for *_, reason in rows)
    refusals = Counter((topic[:TOPIC_KEY_CHARS], bytes(digest), index) for topic, digest, index, _ in rows)
    assert refusals == expected_refusals
