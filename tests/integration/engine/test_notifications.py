"""Notifications of alert changes against real PostgreSQL, a real HTTP receiver and a real SMTP server.

The alert changes are written as the engine writes them (`alerts` and `alert_events` rows); the
notifier runs in the test's loop with retries shortened to fractions of a second.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import psycopg
import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

from config import NotifySettings
from engine.notify import Notifier
from models.notifications import SIGNATURE_HEADER, TIMESTAMP_HEADER, verify_signature
from stack.process import free_port

SECRET = "whsec_test-secret-of-the-notification-tests"
FAST = NotifySettings(retry_base_s=0.05, retry_max_s=0.2, max_attempts=4, timeout_s=2.0)


@dataclass
class Receiver:
    """A webhook receiver answering each delivery `failures` times with 503, then 200; it keeps every
    request, and the accepted ones apart."""

    failures: int
    requests: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    accepted: list[tuple[dict[str, str], bytes]] = field(default_factory=list)
    url: str = ""


@contextlib.contextmanager
def receiving(failures: int) -> Iterator[Receiver]:
    receiver = Receiver(failures)

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers["Content-Length"]))
            request = (dict(self.headers.items()), body)
            receiver.requests.append(request)
            delivery = self.headers["X-Fleetbridge-Delivery"]
            tries = sum(1 for headers, _ in receiver.requests if headers["X-Fleetbridge-Delivery"] == delivery)
            failing = tries <= receiver.failures
            if not failing:
                receiver.accepted.append(request)
            self.send_response(503 if failing else 200)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    receiver.url = f"http://127.0.0.1:{server.server_address[1]}/hooks/fleet"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield receiver
    finally:
        server.shutdown()
        server.server_close()


class Inbox:
    """What a real SMTP server (aiosmtpd) accepted."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], bytes]] = []

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:  # noqa: N802
        assert isinstance(envelope.content, bytes)
        self.messages.append((list(envelope.rcpt_tos), envelope.content))
        return "250 OK"


@pytest.fixture
def smtp_url() -> Iterator[tuple[str, Inbox]]:
    inbox = Inbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        yield f"smtp://127.0.0.1:{port}", inbox
    finally:
        controller.stop()


@pytest.fixture
async def conn(database_url: str) -> AsyncIterator[psycopg.AsyncConnection[Any]]:
    async with await psycopg.AsyncConnection.connect(database_url, autocommit=True) as connection:
        yield connection


async def add_channel(conn: psycopg.AsyncConnection[Any], name: str, url: str) -> int:
    cur = await conn.execute(
        "INSERT INTO notification_channels (name, kind, url, secret) VALUES (%s, 'webhook', %s, %s) RETURNING id",
        (name, url, SECRET),
    )
    row = await cur.fetchone()
    assert row is not None
    return int(row[0])


async def add_rule(conn: psycopg.AsyncConnection[Any], notify: dict[int, list[str]]) -> int:
    cur = await conn.execute(
        "INSERT INTO alert_rules (name, metric, op, threshold, for_s, severity)"
        " VALUES ('engine overheating', 'engine_temp', '>', 110, 30, 'critical') RETURNING id"
    )
    row = await cur.fetchone()
    assert row is not None
    for channel, events in notify.items():
        await conn.execute(
            "INSERT INTO rule_notifications (rule_id, channel_id, events) VALUES (%s, %s, %s)",
            (row[0], channel, events),
        )
    return int(row[0])


async def alert_changes(conn: psycopg.AsyncConnection[Any], rule_id: int, device: str, kinds: list[str]) -> int:
    """An alert and its changes, each in a transaction of its own, as the engine and the API write them."""
    started = datetime(2026, 12, 7, 12, 0, tzinfo=UTC)
    async with conn.transaction():
        cur = await conn.execute(
            "INSERT INTO alerts (rule_id, device_id, started_at, raised_at, severity, state, value, message)"
            " VALUES (%s, %s, %s, %s, 'critical', 'active', 115, 'engine overheating: engine_temp > 110 for 30 s')"
            " RETURNING id",
            (rule_id, device, started, started + timedelta(seconds=30)),
        )
        row = await cur.fetchone()
        assert row is not None
        await conn.execute("INSERT INTO alert_events (alert_id, kind) VALUES (%s, %s)", (row[0], kinds[0]))
    for kind in kinds[1:]:
        async with conn.transaction():
            await conn.execute("INSERT INTO alert_events (alert_id, kind) VALUES (%s, %s)", (row[0], kind))
    return int(row[0])


async def until(condition: Any, limit_s: float = 20.0) -> None:
    deadline = time.monotonic() + limit_s
    while not await condition():
        assert time.monotonic() < deadline, "condition not met in time"
        await asyncio.sleep(0.05)


@contextlib.asynccontextmanager
async def notifier_running(database_url: str, settings: NotifySettings = FAST) -> AsyncIterator[Notifier]:
    notifier = Notifier(database_url, settings)
    stop = asyncio.Event()
    task = asyncio.create_task(notifier.run(stop))
    try:
        yield notifier
    finally:
        stop.set()
        await asyncio.wait_for(task, 10)


async def states(conn: psycopg.AsyncConnection[Any]) -> list[tuple[str, str, int]]:
    cur = await conn.execute("SELECT event, state, attempts FROM notifications ORDER BY id")
    return [(r[0], r[1], r[2]) for r in await cur.fetchall()]


async def test_a_receiver_failing_three_times_gets_each_asked_change_once_signed_and_a_restart_sends_nothing_again(
    database_url: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    with receiving(failures=3) as receiver:
        channel = await add_channel(conn, "ops", receiver.url)
        rule = await add_rule(conn, {channel: ["raised", "cleared"]})
        alert = await alert_changes(conn, rule, "truck-0001", ["raised", "acknowledged", "cleared"])
        async with notifier_running(database_url):
            await until(lambda: _all_sent(conn, 2))
        assert await states(conn) == [("raised", "sent", 4), ("cleared", "sent", 4)]

        # Each change: three 503s, then accepted once. The acknowledgement was not asked for.
        assert sorted(json.loads(body)["event"] for _, body in receiver.accepted) == ["cleared", "raised"]
        assert len(receiver.requests) == 8
        for headers, body in receiver.requests:
            assert (
                verify_signature(SECRET, headers[TIMESTAMP_HEADER], headers[SIGNATURE_HEADER], body, now=time.time())
                is None
            )
            notice = json.loads(body)
            assert (notice["alert_id"], notice["device_id"], notice["rule_name"]) == (
                alert,
                "truck-0001",
                "engine overheating",
            )

        # A restart, and even a lost queue position, send nothing twice: the outbox's key holds.
        await conn.execute("UPDATE notification_cursor SET xid = '0'::xid8, id = 0")
        async with notifier_running(database_url) as again:
            await until(lambda: _cursor_moved(conn))
            await asyncio.sleep(0.3)
        assert again.queued == 0
        assert len(receiver.requests) == 8
        assert len(await states(conn)) == 2


async def test_a_receiver_that_always_fails_ends_dead_lettered_with_its_error_and_can_be_retried(
    database_url: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    with receiving(failures=10_000) as receiver:
        channel = await add_channel(conn, "broken", receiver.url)
        rule = await add_rule(conn, {channel: ["raised"]})
        await alert_changes(conn, rule, "truck-0002", ["raised"])
        async with notifier_running(database_url) as notifier:
            await until(lambda: _any_in(conn, "dead"))
            assert notifier.dead == 1
            cur = await conn.execute("SELECT attempts, last_error FROM notifications")
            assert await cur.fetchone() == (FAST.max_attempts, "HTTP 503: ")
            assert len(receiver.requests) == FAST.max_attempts

            # What `POST /api/v1/notifications/{id}/retry` does: from the first attempt again.
            await conn.execute("UPDATE notifications SET state = 'pending', attempts = 0, next_attempt_at = now()")
            await until(lambda: _any_in(conn, "dead"))
        assert len(receiver.requests) == 2 * FAST.max_attempts


async def test_email_goes_to_the_channels_recipients_through_a_real_smtp_server(
    database_url: str, conn: psycopg.AsyncConnection[Any], smtp_url: tuple[str, Inbox]
) -> None:
    url, inbox = smtp_url
    cur = await conn.execute(
        "INSERT INTO notification_channels (name, kind, recipients) VALUES ('night shift', 'email', %s) RETURNING id",
        (["ops@example.org", "night@example.org"],),
    )
    row = await cur.fetchone()
    assert row is not None
    rule = await add_rule(conn, {row[0]: ["raised"]})
    await alert_changes(conn, rule, "truck-0003", ["raised", "cleared"])
    settings = NotifySettings(smtp_url=url, smtp_from="fleet@example.org", retry_base_s=0.05, max_attempts=3)
    async with notifier_running(database_url, settings):
        await until(lambda: _all_sent(conn, 1))
    assert len(inbox.messages) == 1
    recipients, content = inbox.messages[0]
    assert recipients == ["ops@example.org", "night@example.org"]
    text = content.decode()
    assert "Subject: [fleetbridge] critical alert raised: engine overheating on truck-0003" in text
    assert "engine overheating: engine_temp > 110 for 30 s" in text


async def test_email_without_a_mail_server_says_what_to_set(
    database_url: str, conn: psycopg.AsyncConnection[Any]
) -> None:
    cur = await conn.execute(
        "INSERT INTO notification_channels (name, kind, recipients) VALUES ('ops', 'email', %s) RETURNING id",
        (["ops@example.org"],),
    )
    row = await cur.fetchone()
    assert row is not None
    rule = await add_rule(conn, {row[0]: ["raised"]})
    await alert_changes(conn, rule, "truck-0004", ["raised"])
    async with notifier_running(database_url, NotifySettings(retry_base_s=0.05, max_attempts=2)):
        await until(lambda: _any_in(conn, "dead"))
    cur = await conn.execute("SELECT last_error FROM notifications")
    error = await cur.fetchone()
    assert error is not None
    assert "FLEETBRIDGE_NOTIFY_SMTP_URL" in error[0]


async def _all_sent(conn: psycopg.AsyncConnection[Any], count: int) -> bool:
    cur = await conn.execute("SELECT count(*) FILTER (WHERE state = 'sent'), count(*) FROM notifications")
    row = await cur.fetchone()
    return row is not None and row[0] == row[1] == count


async def _any_in(conn: psycopg.AsyncConnection[Any], state: str) -> bool:
    cur = await conn.execute("SELECT count(*) FROM notifications WHERE state = %s", (state,))
    row = await cur.fetchone()
    return row is not None and row[0] > 0


async def _cursor_moved(conn: psycopg.AsyncConnection[Any]) -> bool:
    cur = await conn.execute("SELECT id FROM notification_cursor")
    row = await cur.fetchone()
    return row is not None and row[0] > 0
