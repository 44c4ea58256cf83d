"""One webhook delivery: POST the notice, signed, and say how it went (a failure is a value, not an
exception: the sender decides on retries)."""

from __future__ import annotations

import time

import httpx

from models.notifications import DELIVERY_HEADER, EVENT_HEADER, SIGNATURE_HEADER, TIMESTAMP_HEADER, webhook_signature

USER_AGENT = "fleetbridge-notify/1"
ERROR_TEXT_MAX = 300  # what is kept of a receiver's answer: enough to diagnose, never a whole page


async def post_webhook(
    client: httpx.AsyncClient, url: str, secret: str, *, delivery: int, event: str, body: bytes
) -> str | None:
    """POST `body` to `url`; None when the receiver answered 2xx, else why not (for `last_error`)."""
    timestamp = int(time.time())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        DELIVERY_HEADER: str(delivery),
        EVENT_HEADER: f"alert.{event}",
        TIMESTAMP_HEADER: str(timestamp),
        SIGNATURE_HEADER: webhook_signature(secret, timestamp, body),
    }
    try:
        response = await client.post(url, content=body, headers=headers)
    except httpx.TimeoutException:
        return "timed out"
    except httpx.HTTPError as exc:
        return f"{type(exc).__name__}: {exc}"[:ERROR_TEXT_MAX] or type(exc).__name__
    if 200 <= response.status_code < 300:
        return None
    return f"HTTP {response.status_code}: {response.text[:ERROR_TEXT_MAX]}"
