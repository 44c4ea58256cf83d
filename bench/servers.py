"""Private Mosquitto, Redis and PostgreSQL for one benchmark run, with the schema migrated (`stack.servers`)."""

from __future__ import annotations

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from stack import servers  # noqa: E402
from stack.process import ServerProcess  # noqa: E402


def start_servers(base: Path, started: list[ServerProcess]) -> tuple[ServerProcess, ServerProcess, ServerProcess]:
    """Start the three servers under `base`, appending each to `started` (the caller stops them)."""
    print(f"[{time.strftime('%H:%M:%S')}] starting Mosquitto, Redis and PostgreSQL under {base}", file=sys.stderr)
    return servers.start_servers(base, started)
