"""Run one engine instance: hold a share of the feed's partitions and evaluate them until told to stop.

One connection does everything: it holds the partitions' advisory locks and runs their cycles, so an
evaluation can only commit while its partition is held. One reconnect loop, with a capped backoff; a lost
connection loses its locks, and the partitions are taken again (by this instance or another) from the
state committed in PostgreSQL.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import time
from typing import Any, Final

import psycopg

from config import Settings
from engine.fence_stage import FenceSet
from engine.lease import PartitionLease
from engine.maintenance import sweep_maintenance
from engine.notify import Notifier
from engine.presence import sweep_presence
from engine.publish import AlertPublisher
from engine.rules import load_rules
from engine.stopping import sleep_unless_stopped
from engine.store import run_cycle

log = logging.getLogger(__name__)

REBALANCE_INTERVAL_S: Final = 2.0
PRESENCE_SWEEP_S: Final = 1.0  # presence alerts are due to the second, not to the poll
MAINTENANCE_SWEEP_S: Final = 5.0  # services fall due over km and days: seconds do not matter
RETRY_MAX_S: Final = 5.0
STOP_GRACE_S: Final = 2.0  # a cycle in flight at stop may finish this long; after that it is rolled back


def instance_name(settings: Settings) -> str:
    """The configured instance name, or one unique to this process."""
    return settings.engine.instance or f"engine-{socket.gethostname()}-{os.getpid()}"


async def serve(settings: Settings, stop: asyncio.Event) -> None:
    """Evaluate until `stop` is set; a cycle still running then is given `STOP_GRACE_S`, then cancelled."""
    lease = PartitionLease(instance_name(settings))
    tasks = {
        asyncio.create_task(_run(settings, lease, stop), name="engine-evaluation"),
        asyncio.create_task(Notifier(settings.database.url, settings.notify).run(stop), name="engine-notifications"),
    }
    if settings.mqtt.url:
        publisher = AlertPublisher(settings.database.url, settings.mqtt.url, f"{lease.name}-alerts")
        tasks.add(asyncio.create_task(publisher.run(stop), name="engine-alert-publisher"))
    log.info(
        "engine %s started; alert changes on MQTT: %s",
        lease.name,
        "published" if settings.mqtt.url else "not published (FLEETBRIDGE_MQTT_URL is not set)",
    )
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({*tasks, stopping}, return_when=asyncio.FIRST_COMPLETED)
    stopping.cancel()
    for task in tasks:
        if task.done():
            task.result()  # an unexpected failure of the work itself
    _, late = await asyncio.wait(tasks, timeout=STOP_GRACE_S)
    for task in late:
        task.cancel()
        log.info("stopping: %s cancelled; what it had not committed is redone by the next owner", task.get_name())
    await asyncio.gather(*late, return_exceptions=True)


async def _run(settings: Settings, lease: PartitionLease, stop: asyncio.Event) -> None:
    delay = 0.1
    while not stop.is_set():
        try:
            conn = await psycopg.AsyncConnection.connect(
                settings.database.url, autocommit=False, application_name=f"fleetbridge-engine {lease.name}"
            )
        except psycopg.OperationalError as exc:
            log.warning("PostgreSQL unreachable (%s); retrying in %.1f s", exc, delay)
            await sleep_unless_stopped(stop, delay)
            delay = min(RETRY_MAX_S, delay * 2)
            continue
        try:
            await _evaluate(settings, conn, lease, stop)
            delay = 0.1
        except psycopg.OperationalError as exc:
            log.warning("PostgreSQL connection lost (%s): partitions released; reconnecting", exc)
        except psycopg.Error as exc:
            # The cycle rolled back: nothing of it is kept, so it is redone from the same state. Logged
            # loudly and retried with backoff, so one bad statement cannot spin or end the process.
            log.error("evaluation failed (%s): partitions released; retrying in %.1f s", exc, delay)
            await sleep_unless_stopped(stop, delay)
            delay = min(RETRY_MAX_S, delay * 2)
        finally:
            lease.lost()
            await _close(conn, lease, clean=stop.is_set())


async def _evaluate(
    settings: Settings, conn: psycopg.AsyncConnection[Any], lease: PartitionLease, stop: asyncio.Event
) -> None:
    poll_s = settings.engine.poll_interval_ms / 1000
    next_rebalance = next_sweep = next_maintenance = 0.0
    held: set[int] = set()
    fences = FenceSet()
    while not stop.is_set():
        if time.monotonic() >= next_rebalance:
            before, held = held, await lease.rebalance(conn)
            next_rebalance = time.monotonic() + REBALANCE_INTERVAL_S
            if held != before:
                log.info("evaluating feed partitions %s", sorted(held))
        async with conn.transaction(), conn.cursor() as cur:
            rules = await load_rules(cur)
            await fences.refresh(cur)
        busy = False
        if time.monotonic() >= next_sweep:
            busy = await sweep_presence(conn, lease.held, rules) > 0
            next_sweep = time.monotonic() + PRESENCE_SWEEP_S
        if time.monotonic() >= next_maintenance:
            busy = await sweep_maintenance(conn, lease.held) > 0 or busy
            next_maintenance = time.monotonic() + MAINTENANCE_SWEEP_S
        for part in sorted(lease.held):
            if stop.is_set():
                return
            report = await run_cycle(conn, part, rules, fences)
            if report.feed_rows:
                busy = True
                if report.alert_events or report.fences.events or report.fences.alert_events:
                    log.info("partition %d: %s", part, report)
        if not busy:
            await sleep_unless_stopped(stop, poll_s)


async def _close(conn: psycopg.AsyncConnection[Any], lease: PartitionLease, *, clean: bool) -> None:
    with contextlib.suppress(psycopg.Error, OSError):
        if clean and not conn.closed:
            await lease.release(conn)
        await conn.close()
