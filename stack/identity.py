"""Which process a pid names: a pid plus its start time and command line, read from /proc.

A pid alone is a weak name: after its process ends the kernel hands the number to the next one, so a
stale pid file can name an editor, a shell or a database. Signalling that would end it. The start time
(clock ticks after boot, /proc/<pid>/stat field 22) differs between any two processes that ever held
the same pid, and the command line says what the process is; a pid is trusted only when both match
what was recorded when it was written.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Self

_PROC: Final = Path("/proc")
_STARTTIME_FIELD: Final = 22  # 1-based, in proc(5)


@dataclass(frozen=True, slots=True)
class ProcessIdentity:
    """A process as recorded in a state file: equal only to the same process, never to a later holder of its pid."""

    pid: int
    start_ticks: int
    cmdline: tuple[str, ...]

    @classmethod
    def of(cls, pid: int) -> Self | None:
        """The identity of the running process `pid`, or None when there is none (or it has ended)."""
        try:
            stat = (_PROC / str(pid) / "stat").read_text()
            raw = (_PROC / str(pid) / "cmdline").read_bytes()
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            return None
        # The command name (field 2) is in parentheses and may hold spaces or ')': split after the last ')'.
        fields = stat[stat.rindex(")") + 2 :].split()
        start_ticks = int(fields[_STARTTIME_FIELD - 3])
        cmdline = tuple(part.decode(errors="replace") for part in raw.split(b"\0") if part)
        return cls(pid, start_ticks, cmdline)

    @classmethod
    def current(cls) -> Self:
        """This process."""
        me = cls.of(os.getpid())
        assert me is not None  # /proc/self always exists on Linux
        return me

    def is_running(self) -> bool:
        """True when this very process still runs (its pid not reused by another)."""
        return ProcessIdentity.of(self.pid) == self

    def to_json(self) -> dict[str, Any]:
        """The form kept in a state file."""
        return {"pid": self.pid, "start_ticks": self.start_ticks, "cmdline": list(self.cmdline)}

    @classmethod
    def from_json(cls, data: Any) -> Self | None:
        """Read back `to_json`'s form; None when it is not that form (an older or damaged file)."""
        if not isinstance(data, dict):
            return None
        pid, ticks, cmdline = data.get("pid"), data.get("start_ticks"), data.get("cmdline")
        if not isinstance(pid, int) or not isinstance(ticks, int) or not isinstance(cmdline, list):
            return None
        return cls(pid, ticks, tuple(str(part) for part in cmdline))
