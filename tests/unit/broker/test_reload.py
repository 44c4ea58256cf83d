"""Writing the account files: checked first, replaced atomically, readable by the broker and nobody else."""

from __future__ import annotations

import grp
import os
import stat
from pathlib import Path

import pytest

from broker.accounts import AccountFiles
from broker.acl import AclAccount, AclError, Role, render_acl
from broker.passwords import PasswordFormatError, hash_secret, password_line
from broker.reload import FILE_MODE, ReloadError, account_paths, find_brokers, reload_broker, write_files

FILES = AccountFiles(password_line("t-1", hash_secret("s")), render_acl([AclAccount("t-1", Role.DEVICE)]))


def test_write_files_writes_both_files_with_mode_0640_and_no_leftovers(tmp_path: Path) -> None:
    paths = write_files(tmp_path / "accounts", FILES)

    assert (paths.passwords.read_text(), paths.acl.read_text()) == (FILES.passwords, FILES.acl)
    for path in (paths.passwords, paths.acl):
        assert stat.S_IMODE(path.stat().st_mode) == FILE_MODE
    assert sorted(p.name for p in paths.acl.parent.iterdir()) == ["acl", "passwords"]


@pytest.mark.skipif(os.geteuid() != 0, reason="only root can hand files to the mosquitto group")
def test_write_files_as_root_gives_the_files_to_root_and_the_mosquitto_group(tmp_path: Path) -> None:
    paths = write_files(tmp_path / "accounts", FILES)

    info = paths.passwords.stat()
    assert (info.st_uid, info.st_gid) == (0, grp.getgrnam("mosquitto").gr_gid)


def test_write_files_replaces_existing_files(tmp_path: Path) -> None:
    write_files(tmp_path, FILES)
    newer = AccountFiles(password_line("t-2", hash_secret("s")), FILES.acl)

    paths = write_files(tmp_path, newer)

    assert paths.passwords.read_text().startswith("t-2:")


def test_write_files_refuses_an_acl_the_broker_would_not_parse_and_keeps_the_old_files(tmp_path: Path) -> None:
    paths = write_files(tmp_path, FILES)

    with pytest.raises(AclError):
        write_files(tmp_path, AccountFiles(FILES.passwords, FILES.acl + "bogus line\n"))
    with pytest.raises(PasswordFormatError):
        write_files(tmp_path, AccountFiles("t-2:plain\n", FILES.acl))

    assert (paths.passwords.read_text(), paths.acl.read_text()) == (FILES.passwords, FILES.acl)


def test_reload_broker_never_signals_a_process_that_is_not_mosquitto(tmp_path: Path) -> None:
    paths = write_files(tmp_path, FILES)

    # This test's own pid: SIGHUP would end pytest, so being refused is the only way to pass.
    with pytest.raises(ReloadError, match="not a running mosquitto"):
        reload_broker(os.getpid(), paths)


def test_find_brokers_finds_none_for_files_no_broker_reads(tmp_path: Path) -> None:
    assert find_brokers(account_paths(tmp_path)) == []
