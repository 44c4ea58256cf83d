"""The running local stack's state file, `STATE_DIR/stack.json`: how other commands find it.

`fleet up` writes it once its servers, bridge and API are up, and removes it when it stops. It holds
the URLs of the broker, Redis, PostgreSQL and the API, where the broker reads its account files, the
device secrets the simulator uses, and the identity (pid, start time, command line) of `fleet up` and
of every process it started. A reader trusts the file only while that identity still runs: a file left
behind by a killed stack, whose pid may since name another process, counts as no stack at all.
"""

from __future__ import annotations

import json
import os
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final
from urllib.parse import urlsplit

from stack.identity import ProcessIdentity
from stack.process import StackError

STATE_FILE: Final = "stack.json"
STOP_POLL_S: Final = 0.2
DEFAULT_PORTS: Final = {"mqtt": 1883, "mqtts": 8883, "http": 80, "https": 443}
# What `fleet status --field NAME` prints, one value for scripts (docs/quickstart.md uses them).
FIELDS: Final = (
    "pid",
    "mqtt_url",
    "mqtt_host",
    "mqtt_port",
    "mqtts_url",
    "mqtts_certificates_url",
    "api_url",
    "api_port",
    "ui_url",
    "redis_url",
    "database_url",
    "logs",
    "device_secrets",
    "accounts_dir",
)


@dataclass(frozen=True, slots=True)
class StackState:
    """What a running `fleet up` tells other commands."""

    owner: ProcessIdentity  # the `fleet up` process itself
    urls: dict[str, str]  # ui, api, openapi, mqtt, redis, database, logs; mqtts, mqtts_certificates with --tls
    processes: dict[str, ProcessIdentity] = field(default_factory=dict)  # servers and children, by name
    accounts_dir: Path | None = None  # where the stack's broker reads its password and ACL files
    device_secrets: Path | None = None  # `id,secret` lines of the simulated trucks
    sim_url: str | None = None  # where the simulated trucks connect
    sim_cert_dir: Path | None = None  # their client certificates, when they log in with them

    @property
    def mqtt_port(self) -> int:
        """The port of the broker's plain MQTT listener."""
        return _port(self.urls["mqtt"])

    @property
    def api_base(self) -> str:
        """The API's base URL, e.g. http://127.0.0.1:8000 (its routes are under /api/v1)."""
        return self.urls["ui"].rstrip("/")

    def value(self, name: str) -> str:
        """One of `FIELDS` as text; empty when this stack has no such thing (no TLS listener, say)."""
        mqtt = urlsplit(self.urls["mqtt"])
        values = {
            "pid": str(self.owner.pid),
            "mqtt_url": self.urls["mqtt"],
            "mqtt_host": mqtt.hostname or "",
            "mqtt_port": str(self.mqtt_port),
            "mqtts_url": self.urls.get("mqtts", ""),
            "mqtts_certificates_url": self.urls.get("mqtts_certificates", ""),
            "api_url": self.api_base,
            "api_port": str(_port(self.api_base)),
            "ui_url": self.urls["ui"],
            "redis_url": self.urls.get("redis", ""),
            "database_url": self.urls.get("database", ""),
            "logs": self.urls.get("logs", ""),
            "device_secrets": _text(self.device_secrets) or "",
            "accounts_dir": _text(self.accounts_dir) or "",
        }
        return values[name]

    def to_json(self) -> dict[str, Any]:
        """The file's content."""
        return {
            "pid": self.owner.pid,
            "owner": self.owner.to_json(),
            "urls": self.urls,
            "processes": {name: identity.to_json() for name, identity in self.processes.items()},
            "accounts_dir": _text(self.accounts_dir),
            "device_secrets": _text(self.device_secrets),
            "sim_url": self.sim_url,
            "sim_cert_dir": _text(self.sim_cert_dir),
        }

    @classmethod
    def from_json(cls, data: Any) -> StackState | None:
        """The state in `data`, or None when it is not a state file this version wrote."""
        if not isinstance(data, dict):
            return None
        owner = ProcessIdentity.from_json(data.get("owner"))
        urls = data.get("urls")
        if owner is None or not isinstance(urls, dict) or "mqtt" not in urls or "ui" not in urls:
            return None
        processes = {}
        for name, raw in (data.get("processes") or {}).items():
            identity = ProcessIdentity.from_json(raw)
            if identity is not None:
                processes[str(name)] = identity
        return cls(
            owner=owner,
            urls={str(k): str(v) for k, v in urls.items()},
            processes=processes,
            accounts_dir=_path(data.get("accounts_dir")),
            device_secrets=_path(data.get("device_secrets")),
            sim_url=data.get("sim_url") if isinstance(data.get("sim_url"), str) else None,
            sim_cert_dir=_path(data.get("sim_cert_dir")),
        )


def state_path(state_dir: Path) -> Path:
    """Where the state file of a stack run from `state_dir` is."""
    return state_dir.absolute() / STATE_FILE


def write_state(state_dir: Path, state: StackState) -> None:
    """Write the state file (0600: it names the database; atomically, so a reader never sees half of it)."""
    path = state_path(state_dir)
    temporary = path.with_name(f".{path.name}.tmp")
    temporary.unlink(missing_ok=True)
    temporary.touch(mode=0o600)
    temporary.write_text(json.dumps(state.to_json(), indent=2) + "\n")
    temporary.replace(path)


def remove_state(state_dir: Path) -> None:
    """Remove the state file (the stack stopped)."""
    state_path(state_dir).unlink(missing_ok=True)


def read_state(state_dir: Path) -> StackState | None:
    """The state file's content, running or not; None when there is no readable one."""
    try:
        return StackState.from_json(json.loads(state_path(state_dir).read_text()))
    except (FileNotFoundError, NotADirectoryError, json.JSONDecodeError, UnicodeDecodeError):
        return None


def running_stack(state_dir: Path) -> StackState | None:
    """The state of the `fleet up` running from `state_dir`, or None when none runs (a stale file is ignored)."""
    state = read_state(state_dir)
    if state is None or not state.owner.is_running():
        return None
    return state


def stale_state(state_dir: Path) -> bool:
    """True when a state file exists but no stack it describes runs (killed, or an unreadable file)."""
    return state_path(state_dir).exists() and running_stack(state_dir) is None


def stop_running(state_dir: Path, *, timeout_s: float = 60.0) -> bool:
    """Ask a running `fleet up` to stop (as Ctrl-C would) and wait for it; False when none runs.

    The pid in the file is signalled only when it is still that `fleet up` (same start time and
    command line); a stale file is removed instead, and whatever process now holds its pid is left alone.
    """
    state = running_stack(state_dir)
    if state is None:
        if state_path(state_dir).exists():
            remove_state(state_dir)
        return False
    os.kill(state.owner.pid, signal.SIGINT)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if not state.owner.is_running():
            return True
        time.sleep(STOP_POLL_S)
    pid = state.owner.pid
    raise StackError(f"`fleet up` (pid {pid}) did not stop within {timeout_s:.0f} s; stop it with: kill {pid}")


def _port(url: str) -> int:
    """The port of `url`, or its scheme's default (an external broker's URL may leave it out)."""
    parts = urlsplit(url)
    return parts.port or DEFAULT_PORTS.get(parts.scheme, 0)


def _text(path: Path | None) -> str | None:
    return None if path is None else str(path)


def _path(value: Any) -> Path | None:
    return Path(value) if isinstance(value, str) and value else None
