"""Secrets for MQTT accounts and the Mosquitto 2.0 password-file lines that check them, made in Python.

Mosquitto 2.0 reads `username:$7$<iterations>$<base64 salt>$<base64 hash>`: type 7 is PBKDF2-HMAC-SHA512
over the UTF-8 password, the salt exactly 12 bytes and the hash exactly 64, both standard base64 with
padding — what `mosquitto_passwd` 2.0 writes (`output_new_password` in src/mosquitto_passwd.c; the broker
decodes it in `unpwd__decode_passwords` and drops a line whose salt or hash has another size). No
`mosquitto_passwd` subprocess: provisioning thousands of devices stays in one process and one transaction.

The hash string is also what the database keeps (`mqtt_accounts.secret_hash`): the password file must be
rendered from the database without the secrets, so the database has to hold exactly the broker's form.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass
from typing import Final

PBKDF2_TYPE: Final = 7
SALT_BYTES: Final = 12
HASH_BYTES: Final = 64
# Rounds only slow down guessing low-entropy passwords; every secret here is 256 random bits, which no
# number of guesses reaches. They do cost the broker, on its one thread: PBKDF2 runs at every CONNECT and,
# at every reload (SIGHUP), once for EVERY connected client (it rechecks them all). Measured here with
# 3,000 connected clients, a reload stalled the broker 0.27 s at 101 rounds and 1.6 s at 1,000: at 100,000
# devices that is ~9 s against ~54 s. So mosquitto_passwd 2.0's own default, 101.
PBKDF2_ITERATIONS: Final = 101
# 32 random bytes: 43 URL-safe characters, usable in mqtt://user:secret@host without percent-encoding.
SECRET_BYTES: Final = 32

_HASH_RE: Final = re.compile(r"\$7\$([0-9]{1,9})\$([A-Za-z0-9+/]+={0,2})\$([A-Za-z0-9+/]+={0,2})")


class PasswordFormatError(ValueError):
    """A hash or username that Mosquitto's password file cannot hold."""


@dataclass(frozen=True, slots=True)
class PasswordHash:
    """One parsed `$7$` hash: PBKDF2-HMAC-SHA512 with these rounds and salt gives `digest`."""

    iterations: int
    salt: bytes
    digest: bytes

    def __str__(self) -> str:
        """The `$7$iterations$salt$hash` form Mosquitto reads."""
        salt = base64.b64encode(self.salt).decode()
        digest = base64.b64encode(self.digest).decode()
        return f"${PBKDF2_TYPE}${self.iterations}${salt}${digest}"


def new_secret() -> str:
    """A fresh random secret for one account; show it once and store only `hash_secret` of it."""
    return secrets.token_urlsafe(SECRET_BYTES)


def hash_secret(secret: str, *, salt: bytes | None = None, iterations: int = PBKDF2_ITERATIONS) -> str:
    """The Mosquitto 2.0 hash of `secret` (`$7$...`), with a new random salt unless one is given (tests)."""
    salt = os.urandom(SALT_BYTES) if salt is None else salt
    if len(salt) != SALT_BYTES:
        raise PasswordFormatError(f"Mosquitto 2.0 needs a {SALT_BYTES}-byte salt, got {len(salt)} bytes")
    if iterations < 1:
        raise PasswordFormatError(f"iterations must be at least 1, got {iterations}")
    return str(PasswordHash(iterations, salt, _digest(secret, salt, iterations)))


def parse_hash(hashed: str) -> PasswordHash:
    """Parse a `$7$` hash; `PasswordFormatError` if Mosquitto 2.0 would drop it."""
    match = _HASH_RE.fullmatch(hashed)
    if match is None:
        raise PasswordFormatError("not a Mosquitto PBKDF2-SHA512 hash ($7$iterations$salt$hash)")
    iterations = int(match[1])
    try:
        salt = base64.b64decode(match[2], validate=True)
        digest = base64.b64decode(match[3], validate=True)
    except binascii.Error as exc:
        raise PasswordFormatError(f"bad base64 in hash: {exc}") from None
    if iterations < 1 or len(salt) != SALT_BYTES or len(digest) != HASH_BYTES:
        raise PasswordFormatError(
            f"Mosquitto 2.0 needs iterations >= 1, a {SALT_BYTES}-byte salt and a {HASH_BYTES}-byte hash; "
            f"got {iterations}, {len(salt)} and {len(digest)}"
        )
    return PasswordHash(iterations, salt, digest)


def verify_secret(secret: str, hashed: str) -> bool:
    """True when `secret` is the one `hashed` was made from (compared in constant time, as the broker does)."""
    parsed = parse_hash(hashed)
    return hmac.compare_digest(_digest(secret, parsed.salt, parsed.iterations), parsed.digest)


def password_line(username: str, hashed: str) -> str:
    """One password-file line (with its newline) letting `username` log in with the secret behind `hashed`."""
    # The broker splits at ':' and trims blanks; a line break would start another entry.
    if not username or username != username.strip() or ":" in username or not username.isprintable():
        raise PasswordFormatError(f"username {username!r} cannot be written to a Mosquitto password file")
    parse_hash(hashed)
    return f"{username}:{hashed}\n"


def check_password_file(text: str) -> None:
    """Raise `PasswordFormatError` naming the first line of a password file Mosquitto 2.0 would drop."""
    for number, line in enumerate(text.splitlines(), start=1):
        username, colon, hashed = line.partition(":")
        if not colon:
            raise PasswordFormatError(f"password file line {number}: no ':' between username and hash")
        try:
            password_line(username, hashed)
        except PasswordFormatError as exc:
            raise PasswordFormatError(f"password file line {number}: {exc}") from None


def _digest(secret: str, salt: bytes, iterations: int) -> bytes:
    return hashlib.pbkdf2_hmac("sha512", secret.encode(), salt, iterations, HASH_BYTES)
