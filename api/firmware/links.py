"""The arguments of an `update_firmware` command: the image's description and a download link for one
device, signed so that no other device (and nobody without the command) can use it."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from api.firmware.schemas import FirmwareImage
from models.firmware import download_token

# A download link outlives its command's expiry by this much: a device that received the command in time
# may still be fetching the image over a bad link.
LINK_GRACE: Final = timedelta(hours=6)


@dataclass(frozen=True, slots=True)
class FirmwareBackend:
    """What firmware routes and rollouts share: the key download links are signed with, and the API's
    public address (empty: the address of the request that asks for an update)."""

    link_secret: str
    public_url: str


def firmware_backend(token_secret: str, public_url: str) -> FirmwareBackend:
    """The backend, its link key derived from the token secret (one secret to configure, two uses kept apart)."""
    key = hashlib.sha256(b"fleetbridge firmware download links\0" + token_secret.encode()).hexdigest()
    return FirmwareBackend(link_secret=key, public_url=public_url.rstrip("/"))


def update_args(
    backend: FirmwareBackend, image: FirmwareImage, device_id: str, *, base: str, expires_at: datetime
) -> dict[str, Any]:
    """The `update_firmware` arguments for `device_id`, its link under `base` (the API as devices reach it)."""
    token = download_token(backend.link_secret, image.id, device_id, expires_at + LINK_GRACE)
    return {
        "image_id": image.id,
        "version": image.version,
        "sha256": image.sha256,
        "size": image.size,
        "url": f"{base.rstrip('/')}/api/v1/firmware/{image.id}/image?token={token}",
    }
