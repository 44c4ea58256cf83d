"""Passwords kept as argon2id hashes and API keys kept as digests: never the secret itself."""

from __future__ import annotations

import hashlib

from api.accounts.keys import KEY_PREFIX, generate_key, is_api_key, key_digest
from api.accounts.passwords import hash_password, password_problem, verify_password

PASSWORD = "correct horse battery staple"


def test_password_hash_is_argon2id_with_rfc_9106_parameters_and_a_salt() -> None:
    first, second = hash_password(PASSWORD), hash_password(PASSWORD)

    assert first.startswith("$argon2id$v=19$m=65536,t=3,p=4$")
    assert PASSWORD not in first
    assert first != second  # a fresh salt each time
    assert verify_password(first, PASSWORD)
    assert not verify_password(first, PASSWORD + "!")


def test_verify_password_fails_without_a_stored_hash_or_with_a_broken_one() -> None:
    assert not verify_password(None, PASSWORD)
    assert not verify_password("plaintext", PASSWORD)


def test_password_problem_bounds_the_length() -> None:
    assert password_problem("x" * 11) is not None
    assert password_problem("x" * 12) is None
    assert password_problem("x" * 1025) is not None


def test_generated_keys_are_random_prefixed_and_stored_as_sha256() -> None:
    first, second = generate_key(), generate_key()

    assert first.key != second.key
    assert first.key.startswith(KEY_PREFIX)
    assert len(first.key) == len(KEY_PREFIX) + 43  # 32 random bytes, URL-safe base64
    assert first.digest == hashlib.sha256(first.key.encode()).digest() == key_digest(first.key)
    assert first.prefix == first.key[:12]
    assert is_api_key(first.key)
    assert not is_api_key("eyJhbGciOiJIUzI1NiJ9.e30.x")
