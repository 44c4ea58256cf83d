"""Forward a device's messages to the broker on its own telemetry topic and wait for the bridge's word.

HTTP ingest adds no second ingest path: each message goes to `fleet/v1/{id}/telemetry` at QoS 1, as
if the device had published it, and the one bridge pipeline validates, dedupes, dead-letters, commits
and fans out. The request then waits, up to `ingest.reply_timeout_s`, for the `persisted` and `rejected`
replies that settle each of its messages (api/ingest/ledger.py), so that a stored message in the answer
means committed to PostgreSQL.

At least once: a message the broker took may be committed after the request gave up waiting (the bridge
was down and its session kept it), and a client retrying after a 503 or 504 sends it again, which the
(device, boot, seq) identity stores once.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from api.ingest.body import Message
from api.ingest.ledger import ReplyLedger, Unit, expected_units, outcome
from api.ingest.schemas import IngestReport, MessageReport, MessageStatus, Refusal
from api.mqtt import MqttLink, MqttUnavailableError
from models.telemetry import Limits
from models.topics import TopicKind, device_topic

log = logging.getLogger(__name__)

Failure = Literal["unavailable", "timeout"]


@dataclass(frozen=True, slots=True)
class Forwarded:
    """The report of one request, and why it is incomplete when it is (None: every message answered)."""

    report: IngestReport
    failure: Failure | None
    detail: str = ""


class TelemetryForwarder:
    """Publishes a request's messages through the API's MQTT link and waits for the bridge's replies."""

    def __init__(self, link: MqttLink, ledger: ReplyLedger, *, limits: Limits, reply_timeout_s: float) -> None:
        self._link = link
        self._ledger = ledger
        self._limits = limits
        self._timeout_s = reply_timeout_s

    async def forward(self, device_id: str, messages: Sequence[Message], *, now: datetime) -> Forwarded:
        """Send every message of one device, in order; return what the bridge said about each."""
        units = [
            expected_units(
                message.payload, content_type=message.content_type, now=now, limits=self._limits, device_id=device_id
            )
            for message in messages
        ]
        if not self._link.connected:
            return Forwarded(
                _report(device_id, messages, units), "unavailable", "the API is not connected to the broker"
            )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self._timeout_s
        topic = device_topic(device_id, TopicKind.TELEMETRY)
        tracked = self._ledger.track(device_id, units)
        try:
            # Started in order, so paho queues them in order: the device's messages reach the bridge as sent.
            sent = await asyncio.gather(
                *(
                    self._link.publish(topic, m.payload, content_type=m.content_type, timeout_s=self._timeout_s)
                    for m in messages
                ),
                return_exceptions=True,
            )
            for result in sent:
                if isinstance(result, MqttUnavailableError):
                    # The client library's text (broker host, port) is for the log, not for the device.
                    log.warning("ingest for %s: %s", device_id, result)
                    detail = "publishing to the broker failed"
                    return Forwarded(_report(device_id, messages, units), "unavailable", detail)
                if isinstance(result, BaseException):
                    raise result
            try:
                await asyncio.wait_for(tracked.settled.wait(), timeout=max(0.0, deadline - loop.time()))
            except TimeoutError:
                detail = f"the bridge did not confirm every message within {self._timeout_s:g} s"
                return Forwarded(_report(device_id, messages, units), "timeout", detail)
            return Forwarded(_report(device_id, messages, units), None)
        finally:
            self._ledger.forget(tracked)


def _report(device_id: str, messages: Sequence[Message], units: Sequence[list[Unit]]) -> IngestReport:
    reports: list[MessageReport] = []
    stored_samples = rejected = unconfirmed = 0
    for message, message_units in zip(messages, units, strict=True):
        summary = outcome(message_units)
        status: MessageStatus
        if summary.open:
            status = "unconfirmed"
            unconfirmed += 1
        elif summary.refused:
            status = "partial" if summary.stored else "rejected"
        else:
            status = "stored"
        stored_samples += sum(r.last - r.first + 1 for r in summary.stored)
        rejected += len(summary.refused)
        reports.append(
            MessageReport(
                line=message.line,
                status=status,
                stored=summary.stored,
                rejected=[
                    Refusal(reason=u.reason or "", index=u.index, seq=u.seq, boot=u.boot) for u in summary.refused
                ],
                unconfirmed=summary.open,
            )
        )
    return IngestReport(
        device_id=device_id,
        messages=reports,
        stored_samples=stored_samples,
        rejected=rejected,
        unconfirmed_messages=unconfirmed,
    )
