"""Delivery of desired documents: each committed version published retained on `fleet/v1/{id}/config`.

A change is committed first and published after, so a broker that is down at PATCH time loses nothing:
`device_twins.published_version` stays behind `version`, and `TwinDelivery.run` publishes every such
document when the API's MQTT link (re)connects, and on a sweep every `SWEEP_INTERVAL_S` for what another
instance (or a device changing group) left behind. Delivery is eventually exact: the broker ends up
retaining each device's latest version, and nothing for a deleted device (its document is cleared).

Each publish happens inside a transaction holding the twin's row lock and reads the document there, so
two instances (or a PATCH and a sweep) publish one device's versions in commit order: an older version
can never land at the broker after a newer one and become the retained message. A sweep publishes up to
`SWEEP_BATCH` devices at once this way, their PUBACKs awaited together.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass
from typing import Final

import msgspec
import psycopg

from api.mqtt import MqttLink, MqttUnavailableError
from api.pool import Pool
from models.topics import TopicKind, device_topic
from models.twin import DesiredConfig, effective

log = logging.getLogger(__name__)

PUBLISH_TIMEOUT_S: Final = 5.0
SWEEP_INTERVAL_S: Final = 30.0
# Published concurrently, under one transaction: at most the MQTT link's in-flight window (api/mqtt.py).
SWEEP_BATCH: Final = 200
RETRY_AFTER_FAILURE_S: Final = 5.0
CONTENT_TYPE: Final = "application/json"

# Locked in device-id order (as the group trigger of migration 0024 re-versions them), so two instances
# sweeping, or a sweep and a group change, never wait on each other in a circle.
_LOCKED_DOCUMENTS: Final = (
    "SELECT t.device_id, t.desired, t.version, g.desired AS group_desired"
    " FROM device_twins t JOIN devices d ON d.id = t.device_id"
    " LEFT JOIN group_twins g ON g.group_name = d.group_name"
    " WHERE t.device_id = ANY(%s) AND t.published_version < t.version ORDER BY t.device_id FOR UPDATE OF t"
)
_MARK_PUBLISHED: Final = (
    "UPDATE device_twins t SET published_version = p.version, published_at = now()"
    " FROM unnest(%s::text[], %s::bigint[]) AS p(device_id, version) WHERE t.device_id = p.device_id"
)


@dataclass(slots=True)
class DeliveryStats:
    """Counters for logs and tests."""

    published: int = 0
    failed: int = 0
    sweeps: int = 0


class TwinDelivery:
    """Publishes committed desired documents over the API's MQTT link (None: none configured, nothing goes)."""

    def __init__(self, link: MqttLink | None) -> None:
        self._link = link
        self._wake = asyncio.Event()
        self.stats = DeliveryStats()
        if link is not None:
            link.on_connect(self.wake)

    def wake(self) -> None:
        """Ask for a sweep now (after a connect, or after a change of many devices at once)."""
        self._wake.set()

    async def deliver(self, pool: Pool, device_id: str) -> bool:
        """Publish the device's document if the broker does not have its version yet; False if it could not."""
        return await self.deliver_many(pool, [device_id]) is not None

    async def deliver_many(self, pool: Pool, device_ids: list[str]) -> int | None:
        """Publish the documents of `device_ids` the broker lacks, concurrently (in one transaction that locks
        them); how many were published, or None when the link is down or any publish failed (those are left
        for the next sweep)."""
        link = self._link
        if link is None or not link.connected:
            return None
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(_LOCKED_DOCUMENTS, (device_ids,))
            due = [
                (device_id, DesiredConfig(version=version, desired=effective(defaults or {}, own)))
                for device_id, own, version, defaults in await cur.fetchall()
            ]
            outcomes = await asyncio.gather(
                *(
                    link.publish(
                        device_topic(device_id, TopicKind.CONFIG),
                        msgspec.json.encode(config),
                        content_type=CONTENT_TYPE,
                        timeout_s=PUBLISH_TIMEOUT_S,
                        retain=True,
                    )
                    for device_id, config in due
                ),
                return_exceptions=True,
            )
            done = [
                (device_id, config.version)
                for (device_id, config), outcome in zip(due, outcomes, strict=True)
                if outcome is None
            ]
            failures = [outcome for outcome in outcomes if outcome is not None]
            for failure in failures:
                if not isinstance(failure, MqttUnavailableError):
                    raise failure
            if done:
                await cur.execute(_MARK_PUBLISHED, ([d for d, _ in done], [v for _, v in done]))
        self.stats.published += len(done)
        if failures:
            self.stats.failed += len(failures)
            log.info("%d twin documents not published yet: %s", len(failures), failures[0])
            return None
        return len(done)

    async def clear_deleted(self, pool: Pool) -> int | None:
        """Clear the retained documents of deleted devices (`twin_clears`, migration 0024); how many listed
        deletions were settled, or None when the link is down or a publish failed (they stay listed)."""
        link = self._link
        if link is None or not link.connected:
            return None
        async with pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
            await cur.execute(
                "SELECT device_id FROM twin_clears ORDER BY device_id LIMIT %s FOR UPDATE SKIP LOCKED", (SWEEP_BATCH,)
            )
            listed = [device_id for (device_id,) in await cur.fetchall()]
            if not listed:
                return 0
            # An id already used again keeps the new life's document once it went out; until then its row is
            # locked here, so the new document is published after the old one is cleared, never before.
            await cur.execute(
                "SELECT device_id, published_version FROM device_twins WHERE device_id = ANY(%s)"
                " ORDER BY device_id FOR UPDATE",
                (listed,),
            )
            reused = {device_id for device_id, published_version in await cur.fetchall() if published_version > 0}
            stale = [device_id for device_id in listed if device_id not in reused]
            outcomes = await asyncio.gather(
                *(
                    link.publish(
                        device_topic(device_id, TopicKind.CONFIG),
                        b"",
                        content_type=None,
                        timeout_s=PUBLISH_TIMEOUT_S,
                        retain=True,
                    )
                    for device_id in stale
                ),
                return_exceptions=True,
            )
            failures = [outcome for outcome in outcomes if outcome is not None]
            for failure in failures:
                if not isinstance(failure, MqttUnavailableError):
                    raise failure
            if failures:
                self.stats.failed += len(failures)
                log.info("%d deleted devices' twin documents not cleared yet: %s", len(failures), failures[0])
                return None
            await cur.execute("DELETE FROM twin_clears WHERE device_id = ANY(%s)", (listed,))
        return len(listed)

    async def sweep(self, pool: Pool) -> int:
        """Clear deleted devices' documents, then publish every document the broker lacks, while the link is
        up; how many documents were published."""
        while await self.clear_deleted(pool):
            pass
        published = 0
        after = ""
        while True:
            async with pool.connection() as conn, conn.cursor() as cur:
                await cur.execute(
                    "SELECT device_id FROM device_twins WHERE published_version < version AND device_id > %s"
                    " ORDER BY device_id LIMIT %s",
                    (after, SWEEP_BATCH),
                )
                due = [device_id for (device_id,) in await cur.fetchall()]
            if not due:
                return published
            delivered = await self.deliver_many(pool, due)
            if delivered is None:
                return published
            published += delivered
            after = due[-1]

    async def run(self, pool: Pool) -> None:
        """Sweep at every wake-up (each connect) and every `SWEEP_INTERVAL_S`, until cancelled."""
        while True:
            try:
                async with asyncio.timeout(SWEEP_INTERVAL_S):
                    await self._wake.wait()
            except TimeoutError:
                pass
            self._wake.clear()
            if self._link is None or not self._link.connected:
                continue
            try:
                published = await self.sweep(pool)
            except (psycopg.Error, OSError) as exc:
                log.warning("twin sweep failed (%s); again in %.0f s", exc, RETRY_AFTER_FAILURE_S)
                await asyncio.sleep(RETRY_AFTER_FAILURE_S)
                self._wake.set()
                continue
            self.stats.sweeps += 1
            if published:
                log.info("published %d twin documents the broker did not have", published)
