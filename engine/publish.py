"""Alert changes to integrators on MQTT `fleet/v1/{device_id}/alerts` (QoS 1): the only module of the
engine that knows the MQTT client library.

The changes are the rows of `alert_events`, written by the engine and the API in the transaction of each
change. One publisher at a time across engine instances (a session advisory lock on its own connection)
reads them in (xid, id) order, only below the snapshot's xmin, so a transaction that commits late is
never skipped; after each PUBACK'd batch it stores its position in `alert_event_cursor`. A crash between
the PUBACK and that store publishes the same events again (at least once; `event_id` lets integrators
drop a repeat). The link owns its reconnect loop: capped backoff, each failure logged.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any, Final

import aiomqtt
import msgspec
import psycopg
from psycopg.rows import dict_row

from config.broker_url import BrokerUrl
from engine.stopping import sleep_unless_stopped
from models.rule_store import ALERT_NOTICES_AFTER
from models.rules import AlertNotice
from models.topics import TopicKind, device_topic

log = logging.getLogger(__name__)

PUBLISH_LOCK: Final = (0x456E67, 0x7075)  # ("Eng", "pu"): one publisher among engine instances
POLL_S: Final = 0.25
RETRY_MAX_S: Final = 5.0
EVENTS_PER_ROUND: Final = 500
KEEPALIVE_S: Final = 30
CONNECT_TIMEOUT_S: Final = 10.0

_CURSOR = "SELECT xid::text, id FROM alert_event_cursor"
_ADVANCE = "UPDATE alert_event_cursor SET xid = %s::xid8, id = %s"
_encode = msgspec.json.Encoder().encode


class AlertPublisher:
    """Publishes every alert change once it is committed, in commit-safe order."""

    def __init__(self, database_url: str, mqtt_url: str, client_id: str) -> None:
        self._database_url = database_url
        self._broker = BrokerUrl.parse(mqtt_url)
        self._client_id = client_id
        self.published = 0

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until `stop` is set; reconnect to either server with a capped backoff."""
        delay = POLL_S
        while not stop.is_set():
            try:
                await self._session(stop)
                delay = POLL_S
            except (psycopg.Error, aiomqtt.MqttError, OSError) as exc:
                log.warning("alert publishing interrupted (%s); retrying in %.1f s", exc, delay)
                await sleep_unless_stopped(stop, delay)
                delay = min(RETRY_MAX_S, delay * 2)

    async def _session(self, stop: asyncio.Event) -> None:
        broker = self._broker
        async with (
            await psycopg.AsyncConnection.connect(
                self._database_url, autocommit=True, application_name="fleetbridge-engine-publisher"
            ) as conn,
            aiomqtt.Client(
                broker.host,
                broker.port,
                username=broker.username,
                password=broker.password,
                identifier=self._client_id,
                protocol=aiomqtt.ProtocolVersion.V5,
                clean_start=True,
                keepalive=KEEPALIVE_S,
                timeout=CONNECT_TIMEOUT_S,
                tls_context=broker.ssl_context(),
            ) as client,
        ):
            while not stop.is_set():
                row = await (await conn.execute("SELECT pg_try_advisory_lock(%s, %s)", PUBLISH_LOCK)).fetchone()
                if row is not None and row[0]:
                    break
                await sleep_unless_stopped(stop, 1.0)  # another instance publishes; take over if it goes
            while not stop.is_set():
                if await self._round(conn, client) < EVENTS_PER_ROUND:
                    await sleep_unless_stopped(stop, POLL_S)

    async def _round(self, conn: psycopg.AsyncConnection[Any], client: aiomqtt.Client) -> int:
        cursor = await (await conn.execute(_CURSOR)).fetchone()
        assert cursor is not None  # migration 0014 inserts the one row
        async with conn.cursor(row_factory=dict_row) as cur:
            await cur.execute(ALERT_NOTICES_AFTER, {"xid": cursor[0], "id": cursor[1], "limit": EVENTS_PER_ROUND})
            rows = await cur.fetchall()
        if not rows:
            return 0
        for row in rows:
            notice = msgspec.convert(
                {k: v for k, v in row.items() if k != "event_xid"}, AlertNotice, from_attributes=False
            )
            await client.publish(device_topic(notice.device_id, TopicKind.ALERTS), _encode(notice), qos=1)
        last = rows[-1]
        await conn.execute(_ADVANCE, (last["event_xid"], last["event_id"]))
        self.published += len(rows)
        return len(rows)
