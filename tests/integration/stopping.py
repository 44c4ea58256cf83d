"""What the process-level stop tests share: how long a stop may take, and waiting for one."""

from __future__ import annotations

import subprocess
from typing import Final

# The promise is a few seconds after SIGTERM or SIGINT; this bound leaves room for a busy machine.
STOP_LIMIT_S: Final = 10.0


def wait_stopped(child: subprocess.Popen[bytes], limit_s: float = STOP_LIMIT_S) -> int | None:
    """`child`'s exit status once it exits, or None (and the child killed) when it is still running
    `limit_s` later."""
    try:
        return child.wait(timeout=limit_s)
    except subprocess.TimeoutExpired:
        child.kill()
        child.wait()
        return None
