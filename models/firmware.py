"""Firmware images and over-the-air updates: what an image is, HTTP byte ranges, download tokens, and the
progress a device reports on `fleet/v1/{id}/ota` (docs/ota.md).

Pure: the clock and the secret are arguments.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
from dataclasses import dataclass
from datetime import datetime
from typing import Final, Literal

import msgspec

VERSION_PATTERN: Final = r"^[A-Za-z0-9][A-Za-z0-9_.+-]{0,63}$"
SHA256_PATTERN: Final = r"^[0-9a-f]{64}$"
_VERSION_RE: Final = re.compile(VERSION_PATTERN)
_RANGE_RE: Final = re.compile(r"bytes=(\d*)-(\d*)")
OtaStage = Literal["downloading", "verifying", "installing", "running", "failed"]


def is_version(value: str) -> bool:
    """True when `value` may name a firmware version (1 to 64 of A-Z a-z 0-9 _ . + -)."""
    return _VERSION_RE.fullmatch(value) is not None


@dataclass(frozen=True, slots=True)
class ByteRange:
    """The bytes `first` … `last` (inclusive) of a file of `size` bytes."""

    first: int
    last: int
    size: int

    @property
    def length(self) -> int:
        """How many bytes the range holds."""
        return self.last - self.first + 1

    def content_range(self) -> str:
        """The `Content-Range` header of a 206 answer."""
        return f"bytes {self.first}-{self.last}/{self.size}"


class RangeNotSatisfiableError(ValueError):
    """A `Range` header no byte of the file satisfies (answered 416)."""


def parse_range(header: str | None, size: int) -> ByteRange | None:
    """The one byte range `header` asks for, None for the whole file (no header, or one this server
    ignores as RFC 9110 allows: several ranges, another unit, bad syntax), or `RangeNotSatisfiableError`.

    `bytes=500-999`, `bytes=500-` (to the end), `bytes=-500` (the last 500 bytes); `last` past the end is
    cut to the end.
    """
    if header is None:
        return None
    match = _RANGE_RE.fullmatch(header.strip())
    if match is None:
        return None
    start, end = match.groups()
    if not start and not end:
        return None
    if not start:
        suffix = int(end)
        if suffix == 0 or size == 0:
            raise RangeNotSatisfiableError(f"{header!r}: an empty suffix of a {size}-byte file")
        return ByteRange(max(0, size - suffix), size - 1, size)
    first = int(start)
    last = size - 1 if not end else min(int(end), size - 1)
    if end and int(end) < first:
        return None  # syntactically invalid: ignored, the whole file is sent
    if first >= size:
        raise RangeNotSatisfiableError(f"{header!r}: the file has {size} bytes")
    return ByteRange(first, last, size)


def download_token(secret: str, image_id: int, device_id: str, expires_at: datetime) -> str:
    """A token that lets `device_id` download image `image_id` until `expires_at` (a device has no API
    credentials of its own: the update command carries this)."""
    expiry = int(expires_at.timestamp())
    message = f"{image_id}:{device_id}:{expiry}".encode()
    mac = hmac.new(secret.encode(), message, hashlib.sha256).digest()
    return f"{expiry}.{device_id}.{base64.urlsafe_b64encode(mac).decode().rstrip('=')}"


def check_download_token(secret: str, image_id: int, token: str, now: datetime) -> str | None:
    """The device a valid, unexpired token for `image_id` names, or None."""
    expiry_text, _, rest = token.partition(".")
    device_id, _, _ = rest.rpartition(".")
    if not expiry_text.isdigit() or not device_id:
        return None
    expected = download_token(secret, image_id, device_id, datetime.fromtimestamp(int(expiry_text), now.tzinfo))
    if not hmac.compare_digest(expected, token) or int(expiry_text) < now.timestamp():
        return None
    return device_id


class OtaProgress(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """A device's progress with a firmware update, on `fleet/v1/{id}/ota`: `downloading` (with `percent`),
    `verifying`, `installing`, `running` (the new `version`, after its reboot), or `failed` (with `reason`;
    the device keeps its old version)."""

    command_id: str
    stage: OtaStage
    percent: float | None = None
    version: str | None = None
    reason: str | None = None
    ts: datetime | None = None
