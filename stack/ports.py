"""The ports the local stack chose, kept in `STATE_DIR/ports.json` so the next start takes them again.

Devices, integrators and bookmarks are configured with a port once. When the configured port is taken
(a system Mosquitto on 1883 is common) the stack takes another; without a record, every restart would
pick a new one and break them all. So each choice is kept, and reused while it is free. This file
outlives `stack.json`: it describes the stack's address, not a running process. When a kept port is
taken, another is chosen and the change is said loudly, with what must be reconfigured.

A port is reused only while its setting is unchanged: changing `FLEETBRIDGE_STACK_MQTT_PORT` (or
`FLEETBRIDGE_API_PORT`, …) means the new value is wanted.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from stack.process import free_port, port_is_free

PORTS_FILE: Final = "ports.json"

Say = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class PortChange:
    """A port that differs from the one the stack used before: what must follow it."""

    name: str
    old: int
    new: int
    reconfigure: str

    def warning(self) -> str:
        """The loud form, for the terminal."""
        return (
            f"WARNING: the {self.name} port CHANGED from {self.old} to {self.new} ({self.old} is taken now). "
            f"{self.reconfigure} must now use port {self.new}."
        )


class PortBook:
    """The stack's port choices, read from and written back to `STATE_DIR/ports.json`."""

    def __init__(self, state_dir: Path, say: Say) -> None:
        """Read the choices of earlier starts from `state_dir` (none yet: an empty book)."""
        self._path = state_dir / PORTS_FILE
        self._say = say
        self._kept: dict[str, dict[str, int]] = _read(self._path)
        self.changes: list[PortChange] = []

    def pick(self, name: str, configured: int, reconfigure: str) -> int:
        """The port for `name`: the one kept from before while free, else the configured one while free,
        else any free one. `configured` 0 means any. `reconfigure` says who must follow a change."""
        kept = self._kept.get(name)
        wanted = kept["port"] if kept is not None and kept.get("configured") == configured else configured
        port = wanted if wanted and port_is_free(wanted) else free_port()
        if kept is not None and kept.get("configured") == configured and port != wanted:
            change = PortChange(name, wanted, port, reconfigure)
            self.changes.append(change)
            self._say(change.warning())
        elif configured and port != configured:
            self._say(f"port {configured} is taken: {name} uses {port} instead (kept for the next start)")
        self._kept[name] = {"configured": configured, "port": port}
        self._write()
        return port

    def _write(self) -> None:
        self._path.parent.mkdir(parents=True, exist_ok=True)
        self._path.write_text(json.dumps(self._kept, indent=2, sort_keys=True) + "\n")


def _read(path: Path) -> dict[str, dict[str, int]]:
    try:
        data = json.loads(path.read_text())
    except (FileNotFoundError, json.JSONDecodeError, UnicodeDecodeError):
        return {}
    if not isinstance(data, dict):
        return {}
    return {
        str(name): {"configured": entry["configured"], "port": entry["port"]}
        for name, entry in data.items()
        if isinstance(entry, dict) and isinstance(entry.get("configured"), int) and isinstance(entry.get("port"), int)
    }
