"""Put the accounts into effect: write the broker's password and ACL files, then make the broker reread them.

Why files and SIGHUP rather than Mosquitto's dynamic-security plugin: before Mosquitto 2.1 dynamic security
has no %u substitution, so confining each device to its own topics would take one role per device, and
its state lives in the plugin's own JSON file, changed only through its MQTT control API — a second source
of truth beside PostgreSQL. The ACL file's `pattern` lines do the confinement in a few constant lines, and
the files are a pure function of the database (render, write, signal), so any Mosquitto can be rebuilt
from it. The cost: the files must be on the broker's host and the broker must be signalled there, which
is why each broker has an agent beside it (broker/agent.py) that owns its files and uses this module;
the API and the CLI only write the database. A hosted or clustered MQTT broker needs its own auth
backend instead.

Measured on Mosquitto 2.0.11 (tests/integration/broker/ check the behaviour, not the timings):
- SIGHUP rereads both files without a restart; a new account's first CONNECT, sent right after the
  signal, is accepted (under 1 ms here).
- At the reload the broker checks every connected client against the new password file again and ends
  the connection of each that no longer passes: a revoked, disabled or rotated account is cut off there
  (its man page says connected clients are unaffected; 2.0.11 does cut them off). So no separate kick.
  Taking over the device's client id would also end its connection (2.0.11 lets any authenticated client
  do that: a hole in itself, see the tests), but only for a client id known in advance, and no longer once
  `use_username_as_clientid` closes that hole.
- That recheck hashes once per connected client on the broker's one thread: with 3,000 clients a reload
  stalled it 0.27 s (101 PBKDF2 rounds, broker/passwords.py). Batch changes (`fleet devices import`)
  into one reload.
- A password file the broker cannot read at a reload ends EVERY connection and refuses every login; an
  ACL file it cannot parse turns ACL checking OFF. So nothing is signalled unless both files check out
  (`check_acl`, `check_password_file`) and the broker's user can read them.

Files are replaced atomically (temporary file, fsync, rename), the ACL first, so the broker never reads a
half-written file and never knows an account before its ACL. Mode 0640; when run as root they belong to
root, group `mosquitto`: the broker (which drops to that user) can read them but not change them.
"""

from __future__ import annotations

import contextlib
import grp
import itertools
import logging
import os
import signal
import stat
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final

import psycopg

from broker.accounts import AccountFiles, render_files
from broker.acl import check_acl
from broker.config import parse_config
from broker.passwords import check_password_file

log = logging.getLogger(__name__)

PASSWORD_FILE: Final = "passwords"  # noqa: S105 - a file name, not a password
ACL_FILE: Final = "acl"
FILE_MODE: Final = 0o640
DIR_MODE: Final = 0o750
MOSQUITTO_GROUP: Final = "mosquitto"
MOSQUITTO_COMM: Final = "mosquitto"
_PROC: Final = Path("/proc")


class ReloadError(Exception):
    """The account files could not be written, or the broker could not be made to read them safely."""


@dataclass(frozen=True, slots=True)
class AccountPaths:
    """Where the broker's password and ACL files are: pass them to `start_mosquitto`."""

    passwords: Path
    acl: Path


@dataclass(frozen=True, slots=True)
class ReloadReport:
    """What `apply` did: the files it wrote and the broker process it signalled."""

    paths: AccountPaths
    pids: tuple[int, ...]


def account_paths(directory: Path) -> AccountPaths:
    """The password and ACL file in `directory`."""
    directory = directory.absolute()
    return AccountPaths(directory / PASSWORD_FILE, directory / ACL_FILE)


def apply(conn: psycopg.Connection[tuple[Any, ...]], directory: Path, *, broker_pid: int) -> ReloadReport:
    """Render the files from the database, write them to `directory` and make broker `broker_pid` reread them.

    The broker agent (broker/agent.py) is what keeps a running broker's files current; this one-shot form
    is for a caller that owns the broker itself (a test's, a launcher's).
    """
    paths = write_files(directory, render_files(conn))
    reload_broker(broker_pid, paths)
    return ReloadReport(paths, (broker_pid,))


def write_files(directory: Path, files: AccountFiles) -> AccountPaths:
    """Check both files, then replace them atomically in `directory` (created if missing), the ACL first."""
    check_acl(files.acl)
    check_password_file(files.passwords)
    paths = account_paths(directory)
    if not directory.exists():
        directory.mkdir(parents=True)
        _give_to_broker_group(directory, DIR_MODE)
    _replace(paths.acl, files.acl)
    _replace(paths.passwords, files.passwords)
    return paths


def reload_broker(pid: int, paths: AccountPaths) -> None:
    """SIGHUP Mosquitto `pid`, after checking it is Mosquitto and that its user can read both files.

    SIGHUP ends most other programs: a stale pid must not take down whatever now has it.
    """
    if _comm(pid) != MOSQUITTO_COMM:
        raise ReloadError(f"process {pid} is not a running mosquitto: not signalled")
    uid, gids = _credentials(pid)
    for path in (paths.passwords, paths.acl):
        if not _readable_by(path, uid, gids):
            raise ReloadError(
                f"mosquitto (pid {pid}, uid {uid}) cannot read {path}: a reload would drop every client "
                f"(password file) or switch ACLs off (ACL file); not signalled. Make it readable by the broker"
                f" (group {MOSQUITTO_GROUP}, mode 0640) and run `fleet broker reload`"
            )
    os.kill(pid, signal.SIGHUP)
    log.info("asked mosquitto (pid %d) to reload %s and %s", pid, paths.passwords, paths.acl)


def find_brokers(paths: AccountPaths) -> list[int]:
    """Local Mosquitto processes whose config file (`-c`) names `paths.passwords` as its password file.

    For `fleet certs revoke` (a CRL rewritten on this host); account changes go through the broker agents.
    """
    found: list[int] = []
    for pid in _pids():
        with contextlib.suppress(OSError, UnicodeDecodeError):
            if _comm(pid) == MOSQUITTO_COMM and paths.passwords in _password_files(pid):
                found.append(pid)
    return found


def _replace(path: Path, text: str) -> None:
    fd, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        _give_to_broker_group(Path(temporary), FILE_MODE)
        Path(temporary).replace(path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise
    directory = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(directory)  # the rename itself survives a crash
    finally:
        os.close(directory)


def _give_to_broker_group(path: Path, mode: int) -> None:
    path.chmod(mode)
    if os.geteuid() != 0:
        return  # the broker runs as this user (Mosquitto drops privileges only when started as root)
    try:
        gid = grp.getgrnam(MOSQUITTO_GROUP).gr_gid
    except KeyError:
        log.warning(
            "no %s group: %s stays root's; a broker running as another user cannot read it", MOSQUITTO_GROUP, path
        )
        return
    os.chown(path, 0, gid)


def _pids() -> Iterator[int]:
    for entry in _PROC.iterdir():
        if entry.name.isdigit():
            yield int(entry.name)


def _comm(pid: int) -> str | None:
    try:
        return (_PROC / str(pid) / "comm").read_text().strip()
    except OSError:
        return None


def _password_files(pid: int) -> set[Path]:
    argv = (_PROC / str(pid) / "cmdline").read_bytes().decode().split("\0")
    cwd = Path(os.readlink(_PROC / str(pid) / "cwd"))
    files: set[Path] = set()
    for flag, value in itertools.pairwise(argv):
        if flag in {"-c", "--config-file"}:
            # Mosquitto opens relative paths from its working folder; an absolute path replaces `cwd`.
            for directive in parse_config((cwd / value).read_text()):
                if directive.name == "password_file":
                    files.add(cwd / directive.value)
    return files


def _credentials(pid: int) -> tuple[int, set[int]]:
    """The effective uid and all groups of process `pid`, from /proc/<pid>/status."""
    uid = 0
    gids: set[int] = set()
    for line in (_PROC / str(pid) / "status").read_text().splitlines():
        key, _, value = line.partition(":")
        if key == "Uid":
            uid = int(value.split()[1])
        elif key == "Gid":
            gids.add(int(value.split()[1]))
        elif key == "Groups":
            gids.update(int(g) for g in value.split())
    return uid, gids


def _readable_by(path: Path, uid: int, gids: set[int]) -> bool:
    """True when a process with `uid` and `gids` can open `path` for reading (and enter its folders)."""
    if uid == 0:
        return True
    try:
        checks = [(path, stat.S_IRUSR, stat.S_IRGRP, stat.S_IROTH)]
        checks += [(folder, stat.S_IXUSR, stat.S_IXGRP, stat.S_IXOTH) for folder in path.parents]
        for item, user_bit, group_bit, other_bit in checks:
            info = item.stat()
            if info.st_uid == uid:
                bit = user_bit
            elif info.st_gid in gids:
                bit = group_bit
            else:
                bit = other_bit
            if not info.st_mode & bit:
                return False
    except OSError:
        return False
    return True
