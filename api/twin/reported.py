"""The devices' reports (`fleet/v1/+/config/reported`), recorded in `device_twins`, newest version only.

Reports are retained by the devices, so an instance that was down hears each device's latest when its
link reconnects. Every API instance hears every report and records it with a conditional write (only a
higher `reported_version` replaces the stored one): N instances record each report once in effect, and
a late or repeated one changes nothing.

The link's callback must not block: reports are conflated per device (the highest version waits) and a
task writes them.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Final

import msgspec
import psycopg
from psycopg.types.json import Jsonb

from api.pool import Pool
from models.topics import TopicError, TopicKind, parse
from models.twin import REPORTED_DECODER, ReportedConfig

log = logging.getLogger(__name__)

RETRY_AFTER_FAILURE_S: Final = 5.0
LOGGED_PAYLOAD_CHARS: Final = 200

_RECORD: Final = (
    "INSERT INTO device_twins (device_id, reported, reported_version, reported_at)"
    " SELECT id, %(applied)s, %(version)s, now() FROM devices WHERE id = %(device_id)s"
    " ON CONFLICT (device_id) DO UPDATE SET reported = EXCLUDED.reported,"
    " reported_version = EXCLUDED.reported_version, reported_at = EXCLUDED.reported_at"
    " WHERE device_twins.reported_version IS NULL OR device_twins.reported_version < EXCLUDED.reported_version"
)


@dataclass(slots=True)
class ReportStats:
    """Counters for logs and tests."""

    heard: int = 0
    unreadable: int = 0
    recorded: int = 0


class ReportRecorder:
    """Takes reports from the MQTT link and records them in PostgreSQL."""

    def __init__(self) -> None:
        self._pending: dict[str, ReportedConfig] = {}
        self._wake = asyncio.Event()
        self.stats = ReportStats()

    def heard(self, topic: str, payload: bytes) -> None:
        """The link's callback for `config/reported`: keep the device's highest version for the writer."""
        try:
            parsed = parse(topic)
            report = REPORTED_DECODER.decode(payload)
        except (TopicError, msgspec.DecodeError) as exc:
            self.stats.unreadable += 1
            log.warning("unreadable twin report on %s (%s): %.*r", topic, exc, LOGGED_PAYLOAD_CHARS, payload)
            return
        if parsed.kind is not TopicKind.CONFIG_REPORTED:
            return  # the link routes only config/reported here
        self.stats.heard += 1
        waiting = self._pending.get(parsed.device_id)
        if waiting is None or waiting.version < report.version:
            self._pending[parsed.device_id] = report
        self._wake.set()

    async def record(self, pool: Pool) -> int:
        """Write the reports waiting now; how many changed a stored report."""
        reports, self._pending = self._pending, {}
        changed = 0
        try:
            async with pool.connection() as conn, conn.cursor() as cur:
                for device_id, report in reports.items():
                    await cur.execute(
                        _RECORD, {"device_id": device_id, "version": report.version, "applied": Jsonb(report.applied)}
                    )
                    changed += cur.rowcount
        except BaseException:
            # Not lost: put back under anything newer heard meanwhile.
            for device_id, report in reports.items():
                newer = self._pending.get(device_id)
                if newer is None or newer.version < report.version:
                    self._pending[device_id] = report
            raise
        self.stats.recorded += changed
        return changed

    async def run(self, pool: Pool) -> None:
        """Record reports as they arrive, until cancelled."""
        while True:
            await self._wake.wait()
            self._wake.clear()
            try:
                await self.record(pool)
            except (psycopg.Error, OSError) as exc:
                log.warning("recording twin reports failed (%s); again in %.0f s", exc, RETRY_AFTER_FAILURE_S)
                await asyncio.sleep(RETRY_AFTER_FAILURE_S)
                self._wake.set()
