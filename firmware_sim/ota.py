"""A simulated device's firmware update, as an updater on flash would do it: download the image with HTTP
range requests (a cut download resumes from the last byte it holds), check its SHA-256, and only then
install it. A device that cannot finish keeps its old version and says why.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import httpx

logger = logging.getLogger(__name__)

READ_TIMEOUT_S: Final = 10.0
RETRY_MIN_S: Final = 0.2
RETRY_MAX_S: Final = 5.0
PROGRESS_STEP_PCT: Final = 10.0  # a progress report every this many percent


@dataclass(frozen=True, slots=True)
class UpdateJob:
    """What an `update_firmware` command asks for (its arguments)."""

    command_id: str
    version: str
    sha256: str
    size: int
    url: str
    expires_at: datetime

    @classmethod
    def of(cls, command_id: str, args: dict[str, Any], expires_at: datetime) -> UpdateJob:
        """The job an `update_firmware` command's arguments describe."""
        return cls(
            command_id, str(args["version"]), str(args["sha256"]), int(args["size"]), str(args["url"]), expires_at
        )


class UpdateFailedError(Exception):
    """The update cannot be completed: the device keeps the version it runs."""


@dataclass(slots=True)
class DownloadStats:
    """How the download went: requests made (1 + resumptions) and bytes received."""

    requests: int = 0
    received: int = 0


def download(
    job: UpdateJob,
    *,
    on_progress: Callable[[float], None],
    give_up_after_s: float,
    stats: DownloadStats | None = None,
    client: httpx.Client | None = None,
) -> bytes:
    """The image, fetched in as many range requests as the link needs; `UpdateFailedError` when the server
    refuses it, or when it cannot be had within `give_up_after_s`."""
    stats = stats or DownloadStats()
    held = bytearray()
    deadline = time.monotonic() + give_up_after_s
    delay = RETRY_MIN_S
    reported = -PROGRESS_STEP_PCT
    own = client is None
    http = client or httpx.Client(timeout=httpx.Timeout(READ_TIMEOUT_S, connect=5.0))
    try:
        while len(held) < job.size:
            headers = {"Range": f"bytes={len(held)}-"} if held else {}
            stats.requests += 1
            try:
                with http.stream("GET", job.url, headers=headers) as response:
                    if response.status_code in (401, 403, 404, 410):
                        raise UpdateFailedError(f"the server refused the download: HTTP {response.status_code}")
                    if response.status_code == 200 and held:
                        held.clear()  # the server ignored the range: start over
                    elif response.status_code not in (200, 206):
                        raise httpx.HTTPStatusError(
                            f"HTTP {response.status_code}", request=response.request, response=response
                        )
                    for chunk in response.iter_bytes():
                        held += chunk
                        stats.received += len(chunk)
                        percent = min(100.0, 100.0 * len(held) / job.size)
                        if percent - reported >= PROGRESS_STEP_PCT:
                            reported = percent
                            on_progress(round(percent, 1))
                delay = RETRY_MIN_S
            except httpx.HTTPError as exc:
                if time.monotonic() + delay > deadline:
                    raise UpdateFailedError(f"download not finished in {give_up_after_s:.0f} s: {exc}") from exc
                logger.info(
                    "download of %s cut at %d bytes (%s); resuming in %.1f s", job.version, len(held), exc, delay
                )
                time.sleep(delay)
                delay = min(RETRY_MAX_S, delay * 2)
    finally:
        if own:
            http.close()
    if reported < 100.0:
        on_progress(100.0)
    return bytes(held[: job.size])


def verify(job: UpdateJob, image: bytes) -> None:
    """`UpdateFailedError` unless `image` is the one the command described."""
    if len(image) != job.size:
        raise UpdateFailedError(f"the image has {len(image)} bytes, not {job.size}")
    actual = hashlib.sha256(image).hexdigest()
    if actual != job.sha256:
        raise UpdateFailedError(f"SHA-256 mismatch: got {actual}, expected {job.sha256}; keeping the old version")
