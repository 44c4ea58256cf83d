"""The checked-in AsyncAPI document is exactly what the code's types generate."""

from __future__ import annotations

from pathlib import Path

import msgspec

from models.asyncapi import CHANNELS, document, render
from models.topics import TopicKind

CHECKED_IN = Path(__file__).resolve().parents[3] / "docs" / "asyncapi.json"


def test_asyncapi_document_matches_the_code() -> None:
    assert CHECKED_IN.read_text() == render(), (
        "docs/asyncapi.json is stale: regenerate it with `.venv/bin/python -m models.asyncapi > docs/asyncapi.json`"
    )


def test_asyncapi_covers_every_topic_the_bridge_uses() -> None:
    addresses = {c["address"] for c in document()["channels"].values()}
    for kind in (TopicKind.TELEMETRY, TopicKind.STATUS, TopicKind.PERSISTED, TopicKind.REJECTED, TopicKind.STATE):
        assert f"fleet/v1/{{deviceId}}/{kind.value}" in addresses


def test_asyncapi_schemas_resolve() -> None:
    doc = document()
    text = msgspec.json.encode(doc).decode()
    for name in doc["components"]["schemas"]:
        assert f"#/components/schemas/{name}" in text
    for channel in CHANNELS:
        for payload in channel.payloads:
            assert payload.__name__ in doc["components"]["schemas"]
