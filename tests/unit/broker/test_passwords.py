"""Mosquitto 2.0 password lines made in Python must be the ones `mosquitto_passwd` makes."""

from __future__ import annotations

import base64

import pytest

from broker.passwords import (
    HASH_BYTES,
    PBKDF2_ITERATIONS,
    SALT_BYTES,
    PasswordFormatError,
    check_password_file,
    hash_secret,
    new_secret,
    parse_hash,
    password_line,
    verify_secret,
)

# Written by Debian's `mosquitto_passwd` 2.0.11 (`-b FILE truck-0042 correct-horse-battery-staple`, and
# the same with `-I 1000` for truck-0043): the tool's default 101 rounds, and the rounds we use.
SECRET = "correct-horse-battery-staple"
VECTOR_101 = (
    "truck-0042:$7$101$K5n2xwOB+pxK7WKf$"
    "AdUZJ0Kw7X6x2dWYvKtpJKWXConSJZ541T93nMYuMNwI2byPVAKA4uXx91KcbPJaPnIEsY5oO1w3SmMPHzU9aA=="
)
VECTOR_1000 = (
    "truck-0043:$7$1000$sFyA+kxI5NpDX6np$"
    "Hlj9wBFL2uQoa3fCu+CCTrIJCBquOyTdgTXPeFXmSIk0/c2FGUgSMuOUsgmscYL50bur8C8mEwDnNP3DAJlYzQ=="
)


@pytest.mark.parametrize("vector", [VECTOR_101, VECTOR_1000])
def test_hash_secret_reproduces_mosquitto_passwd_lines(vector: str) -> None:
    username, hashed = vector.split(":", 1)
    parsed = parse_hash(hashed)

    made = hash_secret(SECRET, salt=parsed.salt, iterations=parsed.iterations)

    assert password_line(username, made) == vector + "\n"


@pytest.mark.parametrize("vector", [VECTOR_101, VECTOR_1000])
def test_verify_secret_accepts_the_right_secret_only(vector: str) -> None:
    hashed = vector.split(":", 1)[1]

    assert verify_secret(SECRET, hashed)
    assert not verify_secret(SECRET + "x", hashed)
    assert not verify_secret("", hashed)


def test_hash_secret_has_the_sizes_mosquitto_2_0_requires() -> None:
    parsed = parse_hash(hash_secret("s"))

    assert (parsed.iterations, len(parsed.salt), len(parsed.digest)) == (PBKDF2_ITERATIONS, SALT_BYTES, HASH_BYTES)


def test_hash_secret_salts_every_hash_anew() -> None:
    assert hash_secret("same") != hash_secret("same")


def test_new_secret_is_long_random_and_url_safe() -> None:
    secrets = {new_secret() for _ in range(100)}

    assert len(secrets) == 100
    for secret in secrets:
        assert len(secret) == 43
        assert set(secret) <= set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_")


@pytest.mark.parametrize(
    "hashed",
    [
        "$6$K5n2xwOB+pxK7WKf$AdUZ",  # the old unsalted-rounds SHA512 type
        "$7$0$K5n2xwOB+pxK7WKf$" + base64.b64encode(bytes(64)).decode(),  # no rounds
        "$7$101$" + base64.b64encode(bytes(16)).decode() + "$" + base64.b64encode(bytes(64)).decode(),  # salt size
        "$7$101$K5n2xwOB+pxK7WKf$" + base64.b64encode(bytes(32)).decode(),  # hash size
        "$7$101$K5n2xwOB+pxK7WKf$not*base64",
        "plain-text-password",
    ],
)
def test_parse_hash_refuses_what_mosquitto_would_drop(hashed: str) -> None:
    with pytest.raises(PasswordFormatError):
        parse_hash(hashed)


def test_hash_secret_refuses_a_salt_of_the_wrong_size() -> None:
    with pytest.raises(PasswordFormatError, match="12-byte salt"):
        hash_secret("s", salt=bytes(16))


@pytest.mark.parametrize("username", ["", "a:b", "line\nbreak", " padded", "tab\tname"])
def test_password_line_refuses_usernames_the_file_cannot_hold(username: str) -> None:
    with pytest.raises(PasswordFormatError, match="username"):
        password_line(username, hash_secret("s"))


def test_check_password_file_names_the_bad_line() -> None:
    good = password_line("a", hash_secret("s"))

    check_password_file(good + good.replace("a:", "b:"))
    with pytest.raises(PasswordFormatError, match="line 2"):
        check_password_file(good + "b:$7$1$bad$hash\n")
    with pytest.raises(PasswordFormatError, match="line 1: no ':'"):
        check_password_file("just-a-name\n")
