"""Operator passwords: argon2id hashes (argon2-cffi), never the passwords themselves.

The parameters are RFC 9106's second recommended option ("low memory"): argon2id, 3 passes over 64 MiB
with 4 lanes, a 16-byte random salt and a 32-byte tag — about 0.15 s of one core here, which bounds an
offline guesser with the stolen table to a few guesses per second per core. They are stored inside every
hash (`$argon2id$v=19$m=65536,t=3,p=4$…`), so raising them later leaves existing hashes verifiable.
Hashing blocks for that long: async callers run it in a worker thread (`asyncio.to_thread`).
"""

from __future__ import annotations

import functools
from typing import Final

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from argon2.profiles import RFC_9106_LOW_MEMORY

PASSWORD_MIN_CHARS: Final = 12
# argon2 takes any length, but a megabyte-long "password" is a denial-of-service attempt, not a password.
PASSWORD_MAX_CHARS: Final = 1024


@functools.cache
def _hasher() -> PasswordHasher:
    return PasswordHasher.from_parameters(RFC_9106_LOW_MEMORY)


@functools.cache
def _decoy_hash() -> str:
    # Verified against when the username is unknown, so that answer takes as long as a wrong password.
    return _hasher().hash("decoy password that no account has")


def password_problem(password: str) -> str | None:
    """Why `password` cannot be an operator's password, or None when it can."""
    if len(password) < PASSWORD_MIN_CHARS:
        return f"a password needs at least {PASSWORD_MIN_CHARS} characters"
    if len(password) > PASSWORD_MAX_CHARS:
        return f"a password has at most {PASSWORD_MAX_CHARS} characters"
    return None


def hash_password(password: str) -> str:
    """The argon2id hash (PHC string) to store for `password` (blocking: ~0.15 s)."""
    return _hasher().hash(password)


def verify_password(stored_hash: str | None, password: str) -> bool:
    """True when `password` matches `stored_hash` (blocking); None checks against a decoy and fails."""
    try:
        matched = _hasher().verify(stored_hash or _decoy_hash(), password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False
    return matched and stored_hash is not None
