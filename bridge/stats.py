"""Counters of the bridge, logged periodically and published to Redis for operators and tests."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Final

STATS_KEY_PREFIX: Final = "fleet:bridge:"


def stats_key(client_id: str) -> str:
    """The Redis hash where one bridge instance publishes its counters."""
    return f"{STATS_KEY_PREFIX}{client_id}"


@dataclass(slots=True)
class BridgeStats:
    """Monotonic counters since start, plus the current in-flight count."""

    received: int = 0
    committed_messages: int = 0  # telemetry (and any other non-status) messages
    committed_statuses: int = 0  # presence statuses, retained ones replayed on subscribe included
    committed_samples: int = 0
    committed_readings: int = 0
    committed_events: int = 0  # device events committed, redeliveries included
    inserted_events: int = 0  # of those, the events new to the database
    inserted_rows: int = 0
    rejected: int = 0
    refused_by_database: int = 0
    batches: int = 0
    sink_retries: int = 0
    sink_timeouts: int = 0  # batches whose database link stalled past bridge.write_timeout_s
    cache_failures: int = 0
    replies_dropped: int = 0
    dropped_on_disconnect: int = 0
    inflight: int = 0
    inflight_peak: int = 0
    pid: int = field(default_factory=os.getpid)

    def as_fields(self, *, connects: int, session_present: bool | None) -> dict[str, str]:
        """Flattened for a Redis hash."""
        values = {name: str(value) for name, value in asdict(self).items()}
        values["connects"] = str(connects)
        values["session_present"] = "" if session_present is None else str(int(session_present))
        return values
