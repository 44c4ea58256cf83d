"""The checked-in AsyncAPI document is exactly what the code's types generate."""

from __future__ import annotations

from pathlib import Path

import msgspec

from models.asyncapi import CHANNELS, document, payload_name_of, render
from models.events import Status
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
            assert payload_name_of(payload) in doc["components"]["schemas"]


def test_asyncapi_status_channel_documents_the_json_and_the_bare_word_forms() -> None:
    doc = document()
    forms = {
        doc["components"]["messages"][ref["$ref"].rsplit("/", 1)[1]]["contentType"]: ref["$ref"]
        for ref in doc["channels"]["status"]["messages"].values()
    }
    assert set(forms) == {"application/json", "text/plain"}
    text = doc["components"]["messages"][forms["text/plain"].rsplit("/", 1)[1]]
    schema = doc["components"]["schemas"][text["payload"]["$ref"].rsplit("/", 1)[1]]
    assert schema["type"] == "string"
    assert schema["enum"] == ["online", "offline"]
    # The bare words are exactly the JSON form's states: a new state cannot be documented in one form only.
    json_schema = doc["components"]["schemas"][Status.__name__]
    assert sorted(json_schema["properties"]["state"]["enum"]) == sorted(schema["enum"])
