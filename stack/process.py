"""Run a real server binary as a child process: free ports, readiness, stop, SIGKILL and restart.

Each server runs in its own session, so its process group holds everything it starts (PostgreSQL's
backends, for example) and stopping it reaches them all. An `atexit` hook stops whatever is still
running, so no server outlives the Python process that started it — unless that process is itself
SIGKILLed, which is why the servers bind to loopback only and take ports the caller chose.
"""

from __future__ import annotations

import atexit
import contextlib
import logging
import os
import pwd
import signal
import socket
import stat
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Final, Self

log = logging.getLogger(__name__)

LOOPBACK: Final = "127.0.0.1"
START_TIMEOUT_S: Final = 30.0
STOP_TIMEOUT_S: Final = 10.0
POLL_INTERVAL_S: Final = 0.02
LOG_TAIL_LINES: Final = 25


class StackError(Exception):
    """Root of the errors raised while running the stack's servers."""


class ServerStartError(StackError):
    """A server did not come up; the message says why and carries the tail of its log."""


class PortInUseError(ServerStartError):
    """The port a server was asked to take is already taken by another socket."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now (the kernel's choice)."""
    with socket.socket() as sock:
        sock.bind((LOOPBACK, 0))
        port: int = sock.getsockname()[1]
        return port


def port_is_free(port: int) -> bool:
    """True when a server could bind `port` on 127.0.0.1 now."""
    with socket.socket() as sock:
        # Servers bind with SO_REUSEADDR, so a port held only by TIME_WAIT connections (left by a
        # server just killed) is free to them; probe the same way or a restart would be refused.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            sock.bind((LOOPBACK, port))
        except OSError:
            return False
        return True


def claim_port(port: int, name: str) -> int:
    """`port` if it is free, a free port if it is 0; `PortInUseError` naming the port otherwise."""
    if port == 0:
        return free_port()
    if not port_is_free(port):
        raise PortInUseError(
            f"{name}: port {port} on {LOOPBACK} is already in use; pass another port, or 0 for a free one"
        )
    return port


def wait_until(predicate: Callable[[], bool], timeout: float, what: str) -> None:
    """Poll `predicate` until it returns True; `TimeoutError` naming `what` after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise TimeoutError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(POLL_INTERVAL_S)


def running_as_root() -> bool:
    """True when this process may (and must) hand servers over to their own users."""
    return os.geteuid() == 0


def give_dir_to(path: Path, user: str) -> None:
    """Create `path` if needed and, when running as root, make `user` its owner.

    Mosquitto drops to its own user when started as root, and PostgreSQL refuses to run as root:
    their data folders must belong to those users.
    """
    path.mkdir(parents=True, exist_ok=True)
    if running_as_root():
        entry = pwd.getpwnam(user)
        os.chown(path, entry.pw_uid, entry.pw_gid)


def check_enterable(path: Path, user: str) -> None:
    """Raise `ServerStartError` when `user` cannot reach `path` (a parent without the x bit for it)."""
    entry = pwd.getpwnam(user)
    groups = set(os.getgrouplist(user, entry.pw_gid))
    for folder in (path, *path.parents):
        info = folder.stat()
        if info.st_uid == entry.pw_uid:
            allowed = info.st_mode & stat.S_IXUSR
        elif info.st_gid in groups:
            allowed = info.st_mode & stat.S_IXGRP
        else:
            allowed = info.st_mode & stat.S_IXOTH
        if not allowed:
            raise ServerStartError(
                f"user {user!r} cannot enter {folder}, so it cannot reach {path}: "
                f"make {folder} enterable (chmod o+x) or choose a folder elsewhere"
            )


@dataclass(frozen=True, slots=True)
class LaunchSpec:
    """How to (re)start one server: a fixed command line, its user, its readiness probe."""

    argv: Sequence[str]
    # True once the server answers its own protocol; a listening socket alone is not ready.
    ready: Callable[[], bool]
    # When running as root, the server runs as this user (PostgreSQL refuses root).
    user: str | None = None
    # The signal for a graceful stop: PostgreSQL wants SIGINT ("fast": it disconnects clients,
    # where SIGTERM would wait for every client to leave).
    stop_signal: signal.Signals = signal.SIGTERM
    start_timeout_s: float = START_TIMEOUT_S


# Servers still running, stopped at interpreter exit as a safety net.
_running: set[ServerProcess] = set()


class ServerProcess:
    """One running server process (and its process group) on a fixed port and data folder."""

    def __init__(self, name: str, *, url: str, port: int, data_dir: Path, log_path: Path, spec: LaunchSpec) -> None:
        """Describe a server; `start` (or the `start_*` functions) create and start one."""
        self.name = name
        self.url = url
        self.port = port
        self.data_dir = data_dir
        self.log_path = log_path
        self._spec = spec
        self._log_offset = 0
        self.popen: subprocess.Popen[bytes] | None = None

    @classmethod
    def start(cls, name: str, *, url: str, port: int, data_dir: Path, log_path: Path, spec: LaunchSpec) -> Self:
        """Start the server and return once it answers; `ServerStartError` if it does not."""
        server = cls(name, url=url, port=port, data_dir=data_dir, log_path=log_path, spec=spec)
        server._spawn()
        return server

    def __repr__(self) -> str:
        """Name, URL and state, for test output."""
        pid = self.popen.pid if self.popen else None
        return f"<ServerProcess {self.name} {self.url} pid={pid} alive={self.alive}>"

    def __enter__(self) -> Self:
        """Use as a context manager: the server stops on exit."""
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        """Stop the server."""
        self.stop()

    @property
    def pid(self) -> int | None:
        """The server's process id (also its process group id), or None before the first start."""
        return self.popen.pid if self.popen else None

    @property
    def alive(self) -> bool:
        """True while the server process has not exited."""
        if self.popen is None or self.popen.returncode is not None:
            return False
        # WNOWAIT: look without reaping, so the process group id stays reserved until we kill it.
        try:
            return os.waitid(os.P_PID, self.popen.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT) is None
        except ChildProcessError:
            return False

    def stop(self, timeout: float = STOP_TIMEOUT_S) -> None:
        """Stop gracefully (the spec's stop signal), SIGKILL the whole group after `timeout` seconds.

        Safe to call on a stopped server. Mosquitto writes its persistence file on a graceful stop.
        """
        if self.popen is None:
            return
        if self.alive:
            os.kill(self.popen.pid, self._spec.stop_signal)
            try:
                wait_until(lambda: not self.alive, timeout, f"{self.name} to stop")
            except TimeoutError:
                log.warning("%s did not stop within %g s; killing its process group", self.name, timeout)
        self._kill_group()

    def kill(self) -> None:
        """SIGKILL the server and everything in its process group, at once: a crash, for fault tests."""
        if self.popen is not None:
            self._kill_group()

    def restart(self) -> None:
        """Start the server again on the same port and data folder (stopping it first if running)."""
        self.stop()
        self._spawn()

    def log_tail(self, lines: int = LOG_TAIL_LINES) -> str:
        """The last `lines` lines this server wrote to its log since its latest start."""
        try:
            with self.log_path.open("rb") as handle:
                handle.seek(self._log_offset)
                text = handle.read().decode(errors="replace")
        except FileNotFoundError:
            return "(no log)"
        return "\n".join(text.splitlines()[-lines:]) or "(log is empty)"

    def _spawn(self) -> None:
        claim_port(self.port, self.name)
        user = self._spec.user if running_as_root() else None
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with self.log_path.open("ab") as log_file:
            self._log_offset = log_file.tell()
            self.popen = subprocess.Popen(
                self._spec.argv,
                stdin=subprocess.DEVNULL,
                stdout=log_file,
                stderr=subprocess.STDOUT,
                cwd=self.data_dir,
                # Its own session and process group: stop/kill reach every process it starts, and a
                # Ctrl-C in the terminal running the tests does not hit the servers half-way.
                start_new_session=True,
                user=user,
                group=pwd.getpwnam(user).pw_gid if user else None,
                extra_groups=[] if user else None,
            )
        _running.add(self)
        try:
            wait_until(self._answers, self._spec.start_timeout_s, f"{self.name} to answer on port {self.port}")
        except TimeoutError as exc:
            self._kill_group()
            raise ServerStartError(f"{exc}; log {self.log_path} ends with:\n{self.log_tail()}") from None
        except BaseException:
            self._kill_group()
            raise
        log.info("%s ready at %s (pid %d)", self.name, self.url, self.popen.pid)

    def _answers(self) -> bool:
        if not self.alive:
            self._kill_group()
            code = self.popen.returncode if self.popen else None
            raise ServerStartError(
                f"{self.name} exited with code {code} while starting on port {self.port}; "
                f"log {self.log_path} ends with:\n{self.log_tail()}"
            )
        return self._spec.ready()

    def _kill_group(self) -> None:
        _running.discard(self)
        popen = self.popen
        if popen is None:
            return
        # An unreaped leader (alive looks with WNOWAIT) keeps its pid naming this group, and Linux
        # reuses no pid that is still a live group's id: the group signalled is always ours.
        if popen.returncode is None or _group_members(popen.pid):
            with contextlib.suppress(ProcessLookupError):
                os.killpg(popen.pid, signal.SIGKILL)
        popen.wait()
        try:
            wait_until(lambda: not _group_members(popen.pid), STOP_TIMEOUT_S, f"{self.name}'s processes to exit")
        except TimeoutError:
            log.warning(
                "%s: processes %s of group %d outlived SIGKILL", self.name, _group_members(popen.pid), popen.pid
            )


def _group_members(pgid: int) -> list[int]:
    """Live (not zombie) processes in process group `pgid`, from /proc."""
    members: list[int] = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        # Fields after the command name: state, ppid, pgrp. A zombie waits for a parent (here PID 1,
        # which may never reap it) and holds nothing: it counts as gone.
        if fields[0] != "Z" and int(fields[2]) == pgid:
            members.append(int(entry.name))
    return members


def _stop_all() -> None:
    for server in list(_running):
        try:
            server.stop(timeout=5)
        except Exception:
            log.exception("could not stop %s at exit", server.name)


atexit.register(_stop_all)
