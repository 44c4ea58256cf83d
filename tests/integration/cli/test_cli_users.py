"""`fleet users`: operator accounts and API keys made from the command line, on a real database."""

from __future__ import annotations

import hashlib
import io

import psycopg
import pytest

from api.accounts.passwords import verify_password
from cli.main import run

pytestmark = pytest.mark.integration

PASSWORD = "the first admin's passphrase"


def test_users_add_reads_the_password_from_stdin_and_stores_only_its_hash(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"FLEETBRIDGE_DATABASE_URL": database_url}
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))

    status = run(["users", "add", "ada", "--role", "admin", "--password-stdin"], env)

    assert status == 0
    assert "added ada (admin)" in capsys.readouterr().err
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT role, password_hash FROM users WHERE username = 'ada'").fetchone()
    assert row is not None
    assert row[0] == "admin"
    assert row[1].startswith("$argon2id$")
    assert verify_password(row[1], PASSWORD)

    monkeypatch.setattr("sys.stdin", io.StringIO(PASSWORD + "\n"))
    assert run(["users", "add", "ada", "--role", "viewer", "--password-stdin"], env) == 1
    assert "exists" in capsys.readouterr().err


def test_users_add_refuses_a_weak_password_and_a_missing_terminal(
    database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    env = {"FLEETBRIDGE_DATABASE_URL": database_url}
    monkeypatch.setattr("sys.stdin", io.StringIO("short\n"))
    assert run(["users", "add", "bob", "--role", "viewer", "--password-stdin"], env) == 1
    assert "at least 12" in capsys.readouterr().err

    monkeypatch.setattr("sys.stdin", io.StringIO(""))  # not a terminal
    assert run(["users", "add", "bob", "--role", "viewer"], env) == 2
    assert "--password-stdin" in capsys.readouterr().err


def test_users_api_key_prints_the_key_once_and_stores_its_digest(
    database_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    status = run(["users", "api-key", "acme", "--group", "north"], {"FLEETBRIDGE_DATABASE_URL": database_url})

    assert status == 0
    out, err = capsys.readouterr()
    key = out.strip()
    assert key.startswith("fbk_")
    assert "only now" in err
    assert key not in err
    with psycopg.connect(database_url) as conn:
        row = conn.execute("SELECT name, group_name, key_sha256 FROM api_keys").fetchone()
    assert row is not None
    assert (row[0], row[1], bytes(row[2])) == ("acme", "north", hashlib.sha256(key.encode()).digest())


def test_users_needs_a_database_url(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["users", "api-key", "acme"], {}) == 2
    assert "FLEETBRIDGE_DATABASE_URL" in capsys.readouterr().err
