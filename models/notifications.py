"""Notifications of alert changes: channels, what a rule asks of them, and the webhook signature.

A channel is a webhook (an HTTPS or HTTP URL, and a secret the body is signed with) or an email channel
(a list of recipients). A rule names the channels to notify and which alert changes each is told of
(`raised` and `cleared` unless it says otherwise). The signature is the receiver's proof that a body came
from this fleetbridge and is fresh: `X-Fleetbridge-Signature: v1=<hex HMAC-SHA256(secret,
"<timestamp>.<body>")>`, with the Unix time in `X-Fleetbridge-Timestamp`, so a replayed request is
refused once its timestamp is older than the receiver's window (`verify_signature`).
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
from typing import Annotated, Final, Literal
from urllib.parse import urlsplit

import msgspec
from msgspec import Meta

ChannelKind = Literal["webhook", "email"]
NotificationState = Literal["pending", "sent", "dead"]
NOTIFICATION_STATES: Final[tuple[str, ...]] = ("pending", "sent", "dead")
SIGNATURE_HEADER: Final = "X-Fleetbridge-Signature"
TIMESTAMP_HEADER: Final = "X-Fleetbridge-Timestamp"
DELIVERY_HEADER: Final = "X-Fleetbridge-Delivery"  # the notification's id: the same on every retry
EVENT_HEADER: Final = "X-Fleetbridge-Event"
REPLAY_WINDOW_S: Final = 300
MAX_RECIPIENTS: Final = 50
# Deliberately loose: one @, no spaces or angle brackets; the mail server is the judge of the rest.
_ADDRESS = re.compile(r"^[^@\s<>,;]+@[^@\s<>,;]+\.[^@\s<>,;]+$")


class ChannelSpec(msgspec.Struct, frozen=True, kw_only=True, forbid_unknown_fields=True):
    """What an admin writes to add a channel; `channel_problem` says whether it makes sense."""

    name: Annotated[str, Meta(min_length=1, max_length=200)]
    kind: ChannelKind
    url: Annotated[str, Meta(max_length=2000)] | None = None
    # A webhook's signing secret; none: the server makes one (shown once, in the answer to the POST).
    secret: Annotated[str, Meta(min_length=16, max_length=200)] | None = None
    recipients: list[Annotated[str, Meta(max_length=320)]] | None = None


def channel_problem(spec: ChannelSpec) -> str | None:
    """Why `spec` cannot be a channel (a sentence for a 400 problem), or None when it can."""
    if spec.kind == "webhook":
        if spec.recipients is not None:
            return "a webhook channel takes url (and optionally secret), not recipients"
        if spec.url is None:
            return "a webhook channel needs url"
        parts = urlsplit(spec.url)
        if parts.scheme not in ("https", "http") or not parts.hostname:
            return f"url {spec.url!r} is not an http(s) URL with a host"
        if parts.username or parts.password:
            return "url must not carry credentials: the signature authenticates the request"
        return None
    if spec.url is not None or spec.secret is not None:
        return "an email channel takes recipients, not url or secret"
    if not spec.recipients:
        return "an email channel needs at least one address in recipients"
    if len(spec.recipients) > MAX_RECIPIENTS:
        return f"{len(spec.recipients)} recipients; at most {MAX_RECIPIENTS} are accepted"
    for address in spec.recipients:
        if not _ADDRESS.match(address):
            return f"{address!r} is not an email address"
    return None


def new_secret() -> str:
    """A webhook signing secret: 32 random bytes, URL-safe text."""
    return "whsec_" + secrets.token_urlsafe(32)


def webhook_signature(secret: str, timestamp: int, body: bytes) -> str:
    """The value of `SIGNATURE_HEADER` for `body` sent at `timestamp` (Unix seconds)."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return "v1=" + mac.hexdigest()


def verify_signature(secret: str, timestamp: str, signature: str, body: bytes, *, now: float) -> str | None:
    """Why a received webhook is not authentic or not fresh (a sentence), or None when it is: what a
    receiver runs on each request (docs/rules.md shows the same in a few lines)."""
    try:
        sent = int(timestamp)
    except ValueError:
        return f"{TIMESTAMP_HEADER} is not a Unix time"
    if abs(now - sent) > REPLAY_WINDOW_S:
        return f"{TIMESTAMP_HEADER} is {abs(now - sent):.0f} s away from now: a replay or a wrong clock"
    if not hmac.compare_digest(webhook_signature(secret, sent, body), signature):
        return f"{SIGNATURE_HEADER} does not match the body"
    return None
