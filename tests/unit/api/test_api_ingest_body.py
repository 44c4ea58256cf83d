"""Cutting an ingest body into messages, and reading HTTP Basic device credentials."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator

import pytest

from api.ingest.body import MAX_MESSAGE_BYTES, BodyRefusal, Message, read_limited, split_messages
from api.ingest.credentials import parse_basic


def test_ndjson_lines_keep_their_numbers_and_skip_blank_lines() -> None:
    body = b'{"seq":1}\r\n\n{"seq":2}\nnot json\n'

    assert split_messages(body, "application/x-ndjson; charset=utf-8", max_messages=10) == [
        Message(1, b'{"seq":1}', None),
        Message(3, b'{"seq":2}', None),
        Message(4, b"not json", None),
    ]


def test_a_single_message_goes_as_it_came_with_its_messagepack_type() -> None:
    assert split_messages(b"\x81\xa3seq\x01", "Application/MsgPack", max_messages=1) == [
        Message(1, b"\x81\xa3seq\x01", "application/msgpack")
    ]
    assert split_messages(b'{"seq":1}\n{"seq":2}', "application/json", max_messages=1) == [
        Message(1, b'{"seq":1}\n{"seq":2}', None)
    ], "JSON is one message, refused by the bridge if it is not one"


@pytest.mark.parametrize(
    ("body", "content_type", "kind"),
    [
        (b'{"seq":1}', "text/plain", "unsupported_type"),
        (b'{"seq":1}', None, "unsupported_type"),
        (b"\n \n", "application/x-ndjson", "empty"),
        (b"", "application/json", "empty"),
        (b"{}\n{}\n{}\n{}\n", "application/x-ndjson", "too_large"),
        (b"x" * (MAX_MESSAGE_BYTES + 1), "application/json", "too_large"),
    ],
)
def test_bodies_that_cannot_be_forwarded_are_refused_whole(body: bytes, content_type: str | None, kind: str) -> None:
    refusal = split_messages(body, content_type, max_messages=3)

    assert isinstance(refusal, BodyRefusal)
    assert refusal.kind == kind


async def chunks(*parts: bytes) -> AsyncIterator[bytes]:
    for part in parts:
        yield part


async def test_read_limited_stops_at_the_limit() -> None:
    assert await read_limited(chunks(b"abc", b"def"), 6) == b"abcdef"
    refusal = await read_limited(chunks(b"abc", b"defg"), 6)
    assert isinstance(refusal, BodyRefusal)
    assert refusal.kind == "too_large"


def basic(text: str) -> str:
    return "Basic " + base64.b64encode(text.encode()).decode()


def test_parse_basic_reads_the_device_id_and_a_secret_that_may_hold_colons() -> None:
    credentials = parse_basic(basic("truck-1:s3cr:et"))

    assert credentials is not None
    assert (credentials.username, credentials.password) == ("truck-1", "s3cr:et")
    assert "s3cr" not in repr(credentials)


@pytest.mark.parametrize("header", [None, "", "Bearer abc", "Basic", "Basic !!!", basic("no-colon"), "Basic " + "gA=="])
def test_parse_basic_refuses_what_is_not_basic_credentials(header: str | None) -> None:
    assert parse_basic(header) is None
