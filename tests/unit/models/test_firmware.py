"""Byte ranges and download links of firmware images (models/firmware.py)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from models.firmware import (
    ByteRange,
    RangeNotSatisfiableError,
    check_download_token,
    download_token,
    is_version,
    parse_range,
)

SIZE = 1000
NOW = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("header", "expected"),
    [
        (None, None),
        ("bytes=0-99", ByteRange(0, 99, SIZE)),
        ("bytes=500-", ByteRange(500, 999, SIZE)),
        ("bytes=-100", ByteRange(900, 999, SIZE)),
        ("bytes=-5000", ByteRange(0, 999, SIZE)),  # a suffix longer than the file: all of it
        ("bytes=990-5000", ByteRange(990, 999, SIZE)),  # cut to the end
        ("bytes=999-999", ByteRange(999, 999, SIZE)),
        # Ignored, as RFC 9110 allows: the whole file is sent.
        ("bytes=0-9,20-29", None),
        ("items=0-9", None),
        ("bytes=9-0", None),
        ("bytes=-", None),
        ("bytes=a-b", None),
    ],
)
def test_parse_range_takes_one_range_and_ignores_what_it_does_not_serve(header: str | None, expected: object) -> None:
    assert parse_range(header, SIZE) == expected


@pytest.mark.parametrize("header", ["bytes=1000-", "bytes=5000-6000", "bytes=-0"])
def test_parse_range_refuses_a_range_past_the_end(header: str) -> None:
    with pytest.raises(RangeNotSatisfiableError):
        parse_range(header, SIZE)


def test_content_range_names_the_span_and_the_size() -> None:
    span = ByteRange(500, 999, SIZE)
    assert (span.length, span.content_range()) == (500, "bytes 500-999/1000")


def test_a_download_link_names_its_device_and_nothing_else_passes() -> None:
    secret = "k" * 43
    token = download_token(secret, 7, "truck.0001", NOW + timedelta(hours=1))
    assert check_download_token(secret, 7, token, NOW) == "truck.0001"
    assert check_download_token(secret, 8, token, NOW) is None, "another image"
    assert check_download_token("x" * 43, 7, token, NOW) is None, "another secret"
    assert check_download_token(secret, 7, token, NOW + timedelta(hours=2)) is None, "expired"
    expiry, device, mac = token.split(".", 1)[0], "truck-0002", token.rsplit(".", 1)[1]
    assert check_download_token(secret, 7, f"{expiry}.{device}.{mac}", NOW) is None, "another device"
    later = str(int(expiry) + 3600)
    assert check_download_token(secret, 7, token.replace(expiry, later, 1), NOW) is None, "a longer life"
    assert check_download_token(secret, 7, "garbage", NOW) is None


@pytest.mark.parametrize(("value", "valid"), [("2.1.0", True), ("2.1.0+build.7", True), ("", False), ("a b", False)])
def test_versions(value: str, valid: bool) -> None:
    assert is_version(value) is valid
