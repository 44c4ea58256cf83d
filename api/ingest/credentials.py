"""Device credentials for HTTP ingest: HTTP Basic with the device's own MQTT username and secret.

Checked against the broker's own hash in `mqtt_accounts.secret_hash` (PBKDF2-SHA512, broker/passwords.py),
so a device has one secret for both ways in, and provisioning, rotating, revoking and disabling
(`fleet devices …`) apply to both. The digest comparison is constant-time (`hmac.compare_digest`); an
unknown or revoked device is checked against a decoy hash, so its answer takes as long as a wrong secret.

PBKDF2 is deliberately slow, so a verified secret is remembered for `ingest.credential_cache_s` (in this
process only), as an HMAC under a per-process random key, never as the secret itself. The price: a
rotated, revoked or disabled device keeps working over HTTP for at most that long (the broker cuts its
MQTT connection at the reload). A wrong secret is never cached, and does not evict a right one.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import hashlib
import hmac
import secrets
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any, Final

import psycopg

from broker.passwords import PasswordFormatError, hash_secret, new_secret, verify_secret
from models.topics import is_device_id

CACHE_MAX_DEVICES: Final = 100_000
# Only accounts of role `device`: a service or integrator name is no device, whatever its secret.
_LOOKUP: Final = (
    "SELECT a.secret_hash, d.disabled FROM mqtt_accounts a JOIN devices d ON d.id = a.device_id"
    " WHERE a.username = %s AND a.role = 'device'"
)


@dataclass(frozen=True, slots=True)
class BasicCredentials:
    """A username and password from an `Authorization: Basic` header."""

    username: str
    password: str

    def __repr__(self) -> str:
        return f"BasicCredentials(username={self.username!r})"


def parse_basic(header: str | None) -> BasicCredentials | None:
    """The credentials of an `Authorization: Basic base64(user:password)` header; None if absent or malformed."""
    if not header:
        return None
    scheme, _, encoded = header.partition(" ")
    if scheme.lower() != "basic" or not encoded.strip():
        return None
    try:
        decoded = base64.b64decode(encoded.strip(), validate=True).decode("utf-8")
    except (binascii.Error, UnicodeDecodeError):
        return None
    username, colon, password = decoded.partition(":")
    if not colon:
        return None
    return BasicCredentials(username, password)


class Verdict(enum.Enum):
    """What checking a device's credentials found."""

    VALID = "valid"
    INVALID = "invalid"  # unknown device, revoked, or wrong secret: one answer for all three
    DISABLED = "disabled"  # the right secret of a disabled device


class DeviceCredentials:
    """Checks devices' secrets against `mqtt_accounts`, remembering verified ones briefly."""

    def __init__(self, cache_s: float) -> None:
        self._cache_s = cache_s
        self._key = secrets.token_bytes(32)
        self._verified: OrderedDict[str, tuple[bytes, float]] = OrderedDict()
        self._decoy = hash_secret(new_secret())

    def remembered(self, credentials: BasicCredentials, now: float) -> bool:
        """True when these exact credentials were verified less than `cache_s` ago (`now`: a monotonic clock)."""
        cached = self._verified.get(credentials.username)
        return cached is not None and cached[1] > now and hmac.compare_digest(cached[0], self._fingerprint(credentials))

    async def check(self, conn: psycopg.AsyncConnection[Any], credentials: BasicCredentials, now: float) -> Verdict:
        """Check against the database: VALID for an enabled device's current secret, then remembered."""
        device_id, secret = credentials.username, credentials.password
        row = None
        if is_device_id(device_id):
            row = await (await conn.execute(_LOOKUP, (device_id,))).fetchone()
        hashed = row[0] if row is not None and row[0] is not None else self._decoy
        matches = await asyncio.to_thread(_matches, secret, hashed)
        if row is None or row[0] is None or not matches:
            return Verdict.INVALID
        if row[1]:
            return Verdict.DISABLED
        self._remember(device_id, self._fingerprint(credentials), now)
        return Verdict.VALID

    def _fingerprint(self, credentials: BasicCredentials) -> bytes:
        return hmac.new(self._key, credentials.password.encode("utf-8", "surrogatepass"), hashlib.sha256).digest()

    def _remember(self, device_id: str, fingerprint: bytes, now: float) -> None:
        if self._cache_s <= 0:
            return
        self._verified[device_id] = (fingerprint, now + self._cache_s)
        self._verified.move_to_end(device_id)
        while len(self._verified) > CACHE_MAX_DEVICES:
            self._verified.popitem(last=False)


def _matches(secret: str, hashed: str) -> bool:
    try:
        return verify_secret(secret, hashed)
    except (PasswordFormatError, UnicodeEncodeError):
        return False
