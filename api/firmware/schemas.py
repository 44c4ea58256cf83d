"""Request and response payloads of firmware images and updates (docs/ota.md)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated

import msgspec
from msgspec import Meta


class FirmwareImage(msgspec.Struct, frozen=True, kw_only=True):
    """A firmware image for devices of one kind: its version, SHA-256 (hex) and size in bytes."""

    id: int
    kind: str
    version: str
    sha256: str
    size: int
    notes: str | None
    created_at: datetime
    created_by: str


class FirmwareUpdatePost(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """Update one device to an image of its kind: sent as an `update_firmware` command, with a download
    link the device alone may use."""

    image_id: Annotated[int, Meta(ge=1)]
    expires_in_s: Annotated[int, Meta(ge=1)] | None = None
