"""What HTTP ingest shares across requests of one app: the MQTT link, the reply ledger, the credential
cache and the rate limits; built from settings once, run by the app's lifespan, reached by injection.

Without `api.mqtt_url` there is no link: the route still authenticates callers and answers 503, naming
the setting, so a misconfigured instance says what it lacks instead of losing messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import timedelta
from typing import Final

from litestar import Litestar
from litestar.datastructures import State

from api import mqtt
from api.ingest.credentials import DeviceCredentials
from api.ingest.forward import TelemetryForwarder
from api.ingest.ledger import ReplyLedger
from api.ingest.limits import IngestLimits
from api.mqtt import MqttLink
from config import Settings, SettingsError
from models.telemetry import Limits
from models.topics import TopicKind, wildcard

STATE_KEY: Final = "ingest"


@dataclass(frozen=True, slots=True)
class IngestBackend:
    """HTTP ingest's shared parts; `forwarder` and `link` are None when no broker URL is configured."""

    forwarder: TelemetryForwarder | None
    link: MqttLink | None
    credentials: DeviceCredentials
    limits: IngestLimits
    max_body_bytes: int
    max_messages: int


def build_ingest(settings: Settings) -> IngestBackend:
    """HTTP ingest for `settings`; `SettingsError` for a broker URL that cannot be parsed."""
    ingest = settings.ingest
    link: MqttLink | None = None
    forwarder: TelemetryForwarder | None = None
    if settings.api.mqtt_url:
        ledger = ReplyLedger()
        try:
            link = MqttLink(
                settings.api.mqtt_url,
                subscriptions=[wildcard(TopicKind.PERSISTED), wildcard(TopicKind.REJECTED)],
                on_message=ledger.dispatch,
            )
        except ValueError as exc:
            raise SettingsError(f"FLEETBRIDGE_API_MQTT_URL: {exc}") from None
        # The bridge's own limits, from the same settings: the API predicts what the bridge will answer for.
        limits = Limits(
            max_payload_bytes=settings.bridge.max_payload_bytes,
            max_samples_per_message=settings.bridge.max_samples_per_message,
            future_skew=timedelta(seconds=settings.bridge.future_skew_s),
            max_age=timedelta(days=settings.database.retention_days),
        )
        forwarder = TelemetryForwarder(link, ledger, limits=limits, reply_timeout_s=ingest.reply_timeout_s)
    return IngestBackend(
        forwarder=forwarder,
        link=link,
        credentials=DeviceCredentials(ingest.credential_cache_s),
        limits=IngestLimits(ingest.messages_per_minute, ingest.auth_failures_per_minute),
        max_body_bytes=ingest.max_body_bytes,
        max_messages=ingest.max_messages,
    )


def ingest_lifespan(backend: IngestBackend) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The app lifespan that shares `backend` with the requests and keeps its MQTT link (if any) up."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state[STATE_KEY] = backend
        if backend.link is None:
            yield
            return
        async with mqtt.running(backend.link):
            yield

    return lifespan


def provide_ingest(state: State) -> IngestBackend:
    """HTTP ingest's shared parts, from `app.state`."""
    backend = state.get(STATE_KEY)
    if not isinstance(backend, IngestBackend):
        raise TypeError("app.state holds no IngestBackend: the API's lifespan has not run")
    return backend
