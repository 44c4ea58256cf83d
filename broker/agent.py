"""The broker agent: the one owner of a Mosquitto's password and ACL files, running beside that broker.

Why an agent: the accounts live in PostgreSQL, and the files a Mosquitto reads must be on its host, with
the signal that makes it reread them sent there. Before the agent, whoever changed an account (an API
instance, the CLI) wrote the files and signalled "the" broker itself, which works only on the broker's
host, and failed silently where the files it wrote were not the ones the broker read. Now the API and
the CLI only write the database; each broker's agent

- LISTENs on `fleetbridge_mqtt_accounts`, which the accounts tables' trigger NOTIFYs in the changing
  transaction (models/migrations/0010_account_changes.sql), and applies each change at once: render the
  files from one snapshot (with the revision they show), write them when they differ, signal its broker;
- resyncs in full when it starts, after every reconnect to the database, and every `resync_interval_s`,
  so a NOTIFY missed while it was away (or a file changed by hand) never leaves the files stale;
- signals only its own broker: the pid it is given, or the one in the pid file it is given (Mosquitto's
  `pid_file`, systemd's), never whatever Mosquitto a process scan finds; `broker.reload.reload_broker`
  still checks that the pid is a Mosquitto that can read the files;
- records in `mqtt_broker_agents` the revision its broker applied and that it is alive, so that whoever
  made a change can tell whether it is in effect (broker/delivery.py).

The broker is signalled whenever the revision moved (a change, or `fleet broker reload` asking for it),
and on a periodic resync only when the files on disk differ from the database. Mosquitto rereads its
files at its next loop iteration after SIGHUP (well under a millisecond here): the agent acknowledges
once it has signalled.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import psycopg
from psycopg import IsolationLevel, sql

from broker.accounts import AccountError, AccountFiles, render_files
from broker.acl import AclError
from broker.delivery import CHANGES_CHANNEL, current_revision
from broker.passwords import PasswordFormatError
from broker.reload import AccountPaths, ReloadError, account_paths, reload_broker, write_files

log = logging.getLogger(__name__)

Connection = psycopg.Connection[tuple[Any, ...]]

RESYNC_INTERVAL_S: Final = 15.0
RETRY_MIN_S: Final = 0.1
RETRY_MAX_S: Final = 5.0
CONNECT_TIMEOUT_S: Final = 5
# How often the loop looks up from waiting for a NOTIFY to see whether it was asked to stop.
STOP_POLL_S: Final = 0.25
NO_REVISION: Final = -1


class AgentError(Exception):
    """The agent cannot do its work as configured; the message says what to change."""


@dataclass(frozen=True, slots=True)
class AgentConfig:
    """One agent: the accounts database, the broker's files and how to find the broker's pid.

    Give `broker_pid` (a broker this process started) or `pid_file` (read at every signal, so a restarted
    broker is found); with neither, the files are kept current but no broker is signalled, and no change
    is acknowledged as applied.
    """

    database_url: str
    accounts_dir: Path
    broker_pid: int | None = None
    pid_file: Path | None = None
    name: str = ""
    resync_interval_s: float = RESYNC_INTERVAL_S

    @property
    def agent_name(self) -> str:
        """`name`, or host:accounts-folder: unique per broker without configuration."""
        return self.name or f"{socket.gethostname()}:{self.accounts_dir.absolute()}"


@dataclass
class SyncReport:
    """What one resync did."""

    revision: int
    files_changed: bool
    signalled: int | None  # the broker pid signalled, if any


@dataclass
class BrokerAgent:
    """Keeps one broker's account files equal to the database and the broker reloaded; see the module doc."""

    config: AgentConfig
    _stop: threading.Event = field(default_factory=threading.Event)
    _applied: int | None = None  # the revision the broker has, None until the first signal
    _thread: threading.Thread | None = None

    @property
    def applied_revision(self) -> int | None:
        """The accounts revision the broker was last signalled with."""
        return self._applied

    @property
    def paths(self) -> AccountPaths:
        """The files this agent owns."""
        return account_paths(self.config.accounts_dir)

    def run(self) -> None:
        """Serve until `stop`: connect, LISTEN, resync, apply every change; reconnect with backoff."""
        delay = RETRY_MIN_S
        name = self.config.agent_name
        log.info("broker agent %s: keeping %s current", name, self.config.accounts_dir)
        while not self._stop.is_set():
            try:
                with psycopg.connect(
                    self.config.database_url, autocommit=True, connect_timeout=CONNECT_TIMEOUT_S
                ) as conn:
                    conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(CHANGES_CHANNEL)))
                    # LISTEN first, then the full resync: a change committed in between is both seen by
                    # the resync and heard, never neither.
                    self.sync(conn)
                    delay = RETRY_MIN_S
                    self._serve(conn)
                    self._forget(conn)
            except psycopg.Error as exc:
                if self._stop.is_set():
                    break
                log.warning("broker agent %s: database link failed (%s); reconnecting in %.1f s", name, exc, delay)
                self._stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)
        log.info("broker agent %s: stopped", name)

    def start(self) -> BrokerAgent:
        """Run in a thread of this process (for `fleet up`); `stop` ends it."""
        self._thread = threading.Thread(target=self.run, name="broker-agent", daemon=True)
        self._thread.start()
        return self

    def stop(self, timeout_s: float = 5.0) -> None:
        """Ask the agent to stop, and wait for its thread if it has one."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout_s)

    def sync(self, conn: Connection) -> SyncReport:
        """One full resync: render, write the files if they differ, signal the broker if needed, record.

        A file or signal that fails is logged, not raised (the next resync tries again), and the revision is
        then not recorded as applied.
        """
        conn.isolation_level = IsolationLevel.REPEATABLE_READ
        try:
            with conn.transaction():  # the revision and the accounts from one snapshot
                revision = current_revision(conn)
                files = render_files(conn)
        finally:
            conn.isolation_level = None
        report = SyncReport(revision, files_changed=self._on_disk() != files, signalled=None)
        try:
            if report.files_changed:
                write_files(self.config.accounts_dir, files)
            if report.files_changed or revision != self._applied:
                report.signalled = self._signal()
                if report.signalled is not None:
                    self._applied = revision
        except (ReloadError, AgentError, AclError, PasswordFormatError, AccountError, OSError) as exc:
            log.error("broker agent %s: revision %d not applied: %s", self.config.agent_name, revision, exc)
        else:
            if report.signalled is not None:
                log.info(
                    "broker agent %s: revision %d applied (files %s), mosquitto pid %d signalled",
                    self.config.agent_name,
                    revision,
                    "rewritten" if report.files_changed else "unchanged",
                    report.signalled,
                )
        self._record(conn)
        return report

    def _serve(self, conn: Connection) -> None:
        next_resync = time.monotonic() + self.config.resync_interval_s
        while not self._stop.is_set():
            wait_s = max(0.0, min(STOP_POLL_S, next_resync - time.monotonic()))
            heard = [notify.payload for notify in conn.notifies(timeout=wait_s, stop_after=1)]
            if heard:
                # Changes committed together arrive together: take them all, apply once.
                heard += [notify.payload for notify in conn.notifies(timeout=0.0)]
            applied = NO_REVISION if self._applied is None else self._applied
            newer = any(not payload.isdigit() or int(payload) > applied for payload in heard)
            if newer or time.monotonic() >= next_resync:
                self.sync(conn)
                next_resync = time.monotonic() + self.config.resync_interval_s

    def _signal(self) -> int | None:
        pid = self._broker_pid()
        if pid is None:
            log.warning(
                "broker agent %s: files written, but no broker pid known (no --broker-pid, no pid file): "
                "the change is not applied until a broker starts with these files",
                self.config.agent_name,
            )
            return None
        reload_broker(pid, self.paths)
        return pid

    def _broker_pid(self) -> int | None:
        if self.config.broker_pid is not None:
            return self.config.broker_pid
        if self.config.pid_file is None:
            return None
        try:
            text = self.config.pid_file.read_text().strip()
        except FileNotFoundError:
            return None
        if not text.isdigit():
            raise AgentError(f"pid file {self.config.pid_file} holds {text[:20]!r}, not a process id")
        return int(text)

    def _on_disk(self) -> AccountFiles | None:
        try:
            return AccountFiles(self.paths.passwords.read_text(), self.paths.acl.read_text())
        except OSError:
            return None

    def _record(self, conn: Connection) -> None:
        conn.execute(
            "INSERT INTO mqtt_broker_agents (name, host, accounts_dir, applied_revision, applied_at, seen_at)"
            " VALUES (%(name)s, %(host)s, %(dir)s, %(applied)s, now(), now())"
            " ON CONFLICT (name) DO UPDATE SET host = excluded.host, accounts_dir = excluded.accounts_dir,"
            " seen_at = now(), applied_revision = excluded.applied_revision,"
            " applied_at = CASE WHEN mqtt_broker_agents.applied_revision = excluded.applied_revision"
            " THEN mqtt_broker_agents.applied_at ELSE now() END",
            {
                "name": self.config.agent_name,
                "host": socket.gethostname(),
                "dir": str(self.config.accounts_dir.absolute()),
                "applied": NO_REVISION if self._applied is None else self._applied,
            },
        )

    def _forget(self, conn: Connection) -> None:
        """A stopping agent takes itself off the list: nobody should wait for it."""
        conn.execute("DELETE FROM mqtt_broker_agents WHERE name = %s", (self.config.agent_name,))
