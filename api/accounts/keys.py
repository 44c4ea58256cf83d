"""Integrator API keys: 256 random bits, shown once, kept only as their SHA-256 digest.

A key is `fbk_` followed by 43 URL-safe characters. The prefix tells a key from a JWT (the WebSocket's
`?token=` accepts either) and lets secret scanners recognise a leaked key. A digest without salt or
stretching is enough for a secret this random: there is no dictionary to try, and 2^256 guesses are out
of reach, while checking a request stays one index lookup rather than a slow hash per call.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass
from typing import Final

KEY_PREFIX: Final = "fbk_"
KEY_BYTES: Final = 32
# The prefix plus 8 characters (48 bits) of the key: enough to tell keys apart in a listing.
SHOWN_PREFIX_CHARS: Final = len(KEY_PREFIX) + 8


@dataclass(frozen=True, slots=True)
class GeneratedKey:
    """A fresh key: `key` goes to its owner once; `digest` and `prefix` are what is stored."""

    key: str
    digest: bytes
    prefix: str


def is_api_key(text: str) -> bool:
    """True when `text` has the form of an API key (not whether such a key exists)."""
    return text.startswith(KEY_PREFIX)


def key_digest(key: str) -> bytes:
    """The SHA-256 digest a key is stored and looked up by."""
    return hashlib.sha256(key.encode()).digest()


def generate_key() -> GeneratedKey:
    """A new random API key."""
    key = KEY_PREFIX + secrets.token_urlsafe(KEY_BYTES)
    return GeneratedKey(key=key, digest=key_digest(key), prefix=key[:SHOWN_PREFIX_CHARS])
