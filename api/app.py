"""`create_app(settings)`: the Litestar application, with its backends opened and closed by its lifespan.

Nothing is read from the environment here and nothing is built at import time: every call returns a
fresh app (tests build one per client; several instances can share one process).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import AbstractAsyncContextManager
from typing import Final

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.logging.config import LoggingConfig
from litestar.openapi import OpenAPIConfig
from litestar.openapi.plugins import JsonRenderPlugin
from psycopg_pool import AsyncConnectionPool
from redis.asyncio import BlockingConnectionPool, Redis
from redis.asyncio.retry import Retry
from redis.backoff import NoBackoff
from redis.exceptions import RedisError

from api.accounts.controllers import ApiKeyController, UserController, login
from api.accounts.limits import LoginThrottle
from api.accounts.refresh import refresh
from api.alerts.controllers import AlertController
from api.auth import PUBLIC, TokenIssuer, build_auth, require_access
from api.backends import DEPENDENCIES, STATE_KEY, Backends, ExportLimits
from api.commands.controllers import CommandController, DeviceCommandController, command_catalogue
from api.commands.dispatch import Dispatcher, DispatchSettings
from api.commands.submit import STATE_KEY as COMMANDS_KEY
from api.commands.submit import CommandsBackend, provide_commands
from api.contract.controllers import asyncapi
from api.device_health.controllers import device_health_score, group_health_summary
from api.devices.controllers import DeviceController, RefusedController
from api.devices.provision import provision_dependencies
from api.events.controllers import device_events
from api.firmware.controllers import STATE_KEY as FIRMWARE_KEY
from api.firmware.controllers import FirmwareController, firmware_update, provide_firmware
from api.firmware.links import firmware_backend
from api.fleet.controllers import state as fleet_state
from api.geofences.controllers import GeofenceController, device_geofence_events
from api.groups.controllers import GroupController
from api.health.controllers import healthz, readyz
from api.ingest.backend import build_ingest, ingest_lifespan, provide_ingest
from api.ingest.controllers import ingest
from api.live.alerts import ALERT_EVENTS_CHANNEL, AlertEventReader
from api.live.commands import COMMAND_EVENTS_CHANNEL, CommandEventReader
from api.live.controllers import live, live_poll
from api.live.directory import GroupDirectory
from api.live.hub import LiveHub
from api.live.stream import LiveStreamReader
from api.live.wake import Wake
from api.live.watch import CredentialWatch
from api.maintenance.controllers import DeviceMaintenanceController, ScheduleController
from api.mqtt import MqttLink
from api.notifications.controllers import ChannelController, NotificationController
from api.openapi import document_problems
from api.pool import Pool
from api.presence.controllers import presence_timeline
from api.problems import log_server_error, problem_details_plugin
from api.rollouts.advance import advance_forever
from api.rollouts.controllers import RolloutController
from api.rules.controllers import RuleController
from api.stopping import STATE_KEY as STOPPING_KEY
from api.stopping import Stopping
from api.telemetry.controllers import TelemetryController, TrackController
from api.trips.controllers import device_idling, device_stops, device_summary, device_trips, group_day_summary
from api.twin.backend import build_twin, provide_twin_delivery, twin_lifespan
from api.twin.controllers import change_device_twin, change_group_twin, device_twin, group_twin
from api.ui.assets import load_bundle
from api.ui.controllers import ui_handlers
from config import Settings, SettingsError

log = logging.getLogger(__name__)

API_PREFIX: Final = "/api/v1"
API_VERSION: Final = "1.0.0"
POOL_MIN_SIZE: Final = 1
POOL_MAX_SIZE: Final = 10
# How long a request waits for a database connection before answering 503: a caller (or a load
# balancer) learns fast that PostgreSQL is away, instead of holding the connection for psycopg's 30 s.
POOL_ACQUIRE_TIMEOUT_S: Final = 5.0
# Track exports read through a pool of their own (api.export_pool_size), so slow downloads never take
# the connections every other route needs. A download under way waits this long for its next chunk's
# connection rather than being cut short; its first one waits api.export_wait_s, then answers 503.
EXPORT_POOL_MIN_SIZE: Final = 0
EXPORT_CHUNK_WAIT_S: Final = 30.0
STARTUP_PROBE_TIMEOUT_S: Final = 2.0
# One immediate retry replaces a pooled Redis connection that went stale (a Redis restart); longer
# outages are the stream reader's to ride out, with its own logged backoff, and requests fail fast.
REDIS_RETRIES: Final = 1
# A burst of requests beyond the pool waits for a connection (then 503) instead of failing at once, as
# redis-py's default pool does ("Too many connections" at 100 in use).
REDIS_MAX_CONNECTIONS: Final = 100
REDIS_POOL_WAIT_S: Final = 5.0

SHUTDOWN_STEP_S: Final = 1.0  # each cleanup step of the lifespan, at most


async def _bounded(what: str, step: Awaitable[object]) -> None:
    """Await one shutdown step for at most `SHUTDOWN_STEP_S`; past that, log it and go on."""
    try:
        async with asyncio.timeout(SHUTDOWN_STEP_S):
            await step
    except TimeoutError:
        log.info("closing %s took longer than %.0f s: left behind", what, SHUTDOWN_STEP_S)


def _backends_lifespan(settings: Settings) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        # open=False + open(wait=False): the API starts (and /readyz can say why it is not ready) while
        # PostgreSQL is still down; the pool keeps connecting in the background.
        pool: Pool = AsyncConnectionPool(
            settings.database.url,
            open=False,
            min_size=POOL_MIN_SIZE,
            max_size=POOL_MAX_SIZE,
            timeout=POOL_ACQUIRE_TIMEOUT_S,
            kwargs={"autocommit": True},
            name="api",
        )
        export_pool: Pool = AsyncConnectionPool(
            settings.database.url,
            open=False,
            min_size=EXPORT_POOL_MIN_SIZE,
            max_size=settings.api.export_pool_size,
            timeout=EXPORT_CHUNK_WAIT_S,
            kwargs={"autocommit": True},
            name="api-export",
        )
        await pool.open(wait=False)
        await export_pool.open(wait=False)
        export_limits = ExportLimits(wait_s=settings.api.export_wait_s)
        redis = Redis.from_pool(
            BlockingConnectionPool.from_url(
                settings.redis.url,
                max_connections=REDIS_MAX_CONNECTIONS,
                timeout=REDIS_POOL_WAIT_S,
                retry=Retry(NoBackoff(), REDIS_RETRIES),
            )
        )
        directory = GroupDirectory(pool, refresh_s=settings.api.live_group_refresh_s)
        hub = LiveHub(directory, heartbeat_s=settings.api.live_heartbeat_s)
        reader = LiveStreamReader(redis, hub)
        try:
            # Pin the stream position now, so every update after startup reaches subscribers; if Redis
            # is down the reader finds its position once it can.
            async with asyncio.timeout(STARTUP_PROBE_TIMEOUT_S):
                await reader.start_from_latest()
        except (RedisError, OSError, TimeoutError) as exc:
            log.warning("live stream position unknown at startup (%s); the reader will retry", exc)
        watch = CredentialWatch(pool, interval_s=settings.api.live_auth_check_s)
        app.state[STATE_KEY] = Backends(
            pool=pool, export_pool=export_pool, export_limits=export_limits, redis=redis, hub=hub, watch=watch
        )
        tasks = [
            asyncio.create_task(reader.run(), name="live-stream-reader"),
            asyncio.create_task(directory.run(), name="live-group-directory"),
            asyncio.create_task(watch.run(), name="live-credential-watch"),
            asyncio.create_task(
                AlertEventReader(pool, hub, wake=Wake(settings.database.url, ALERT_EVENTS_CHANNEL)).run(),
                name="live-alert-events",
            ),
            asyncio.create_task(
                CommandEventReader(pool, hub, wake=Wake(settings.database.url, COMMAND_EVENTS_CHANNEL)).run(),
                name="live-command-events",
            ),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            # Each step bounded: a stop must not wait on a Redis or PostgreSQL that stopped answering.
            await _bounded("the live readers", asyncio.gather(*tasks, return_exceptions=True))
            await _bounded("the Redis connections", redis.aclose())
            await _bounded("the export pool", export_pool.close(timeout=SHUTDOWN_STEP_S))
            await _bounded("the database pool", pool.close(timeout=SHUTDOWN_STEP_S))

    return lifespan


def _commands_lifespan(
    backend: CommandsBackend, link: MqttLink | None
) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """Run this instance's command dispatcher and rollout advancer (after the backends' lifespan: they
    need its pool)."""

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        backends = app.state[STATE_KEY]
        assert isinstance(backends, Backends)
        settings = backend.settings
        dispatcher = Dispatcher(
            backends.pool,
            link,
            DispatchSettings(
                interval_s=settings.dispatch_interval_s,
                publish_timeout_s=settings.publish_timeout_s,
                result_grace_s=settings.result_grace_s,
            ),
        )
        backend.dispatcher = dispatcher
        app.state[COMMANDS_KEY] = backend
        firmware = app.state[FIRMWARE_KEY]
        tasks = [
            asyncio.create_task(dispatcher.run(), name="command-dispatcher"),
            asyncio.create_task(
                advance_forever(backends.pool, firmware, interval_s=settings.dispatch_interval_s),
                name="rollout-advancer",
            ),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            await _bounded("the command dispatcher", asyncio.gather(*tasks, return_exceptions=True))

    return lifespan


def create_app(settings: Settings) -> Litestar:
    """A new API application for `settings`; raises `SettingsError` when a backend URL is missing or the
    token secret is too short."""
    missing = [name for name, url in (("REDIS", settings.redis.url), ("DATABASE", settings.database.url)) if not url]
    if missing:
        names = " and ".join(f"FLEETBRIDGE_{name}_URL" for name in missing)
        raise SettingsError(f"the API needs {names} (the local stack sets them)")
    security = build_auth(settings.api)
    tokens = TokenIssuer(security, settings.api.session_max_s)
    throttle = LoginThrottle(settings.api.login_attempts_per_minute)
    ingest_backend = build_ingest(settings)
    twin_backend = build_twin(ingest_backend.link)
    ui_bundle = load_bundle(settings.api.map_tile_url)
    commands_backend = CommandsBackend(settings.commands)

    def provide_tokens() -> TokenIssuer:
        return tokens

    def provide_login_throttle() -> LoginThrottle:
        return throttle

    api = Router(
        API_PREFIX,
        route_handlers=[
            DeviceController,
            RefusedController,
            TelemetryController,
            TrackController,
            live,
            live_poll,
            login,
            refresh,
            UserController,
            ApiKeyController,
            ingest,
        ],
    )
    for handler in (
        GroupController,
        fleet_state,
        presence_timeline,
        device_events,
        RuleController,
        AlertController,
        ChannelController,
        NotificationController,
        GeofenceController,
        device_geofence_events,
        DeviceCommandController,
        CommandController,
        command_catalogue,
        FirmwareController,
        firmware_update,
        RolloutController,
        device_health_score,
        group_health_summary,
        ScheduleController,
        DeviceMaintenanceController,
    ):
        api.register(handler)
    for trip_handler in (device_trips, device_stops, device_idling, device_summary, group_day_summary):
        api.register(trip_handler)
    for twin_handler in (device_twin, change_device_twin, group_twin, change_group_twin):
        api.register(twin_handler)
    app = Litestar(
        route_handlers=[api, healthz, readyz, *ui_handlers(ui_bundle), asyncapi],
        dependencies={
            **DEPENDENCIES,
            "tokens": Provide(provide_tokens, sync_to_thread=False),
            "login_throttle": Provide(provide_login_throttle, sync_to_thread=False),
            "ingest_backend": Provide(provide_ingest, sync_to_thread=False),
            "commands": Provide(provide_commands, sync_to_thread=False),
            "firmware": Provide(provide_firmware, sync_to_thread=False),
            "twin_delivery": Provide(provide_twin_delivery, sync_to_thread=False),
            **provision_dependencies(settings),
        },
        # Authentication (who): JWTs and API keys, by the middleware `security` installs. Authorisation
        # (what): this guard, on every route, the WebSocket and the schema included.
        on_app_init=[security.on_app_init],
        guards=[require_access],
        # The backends first; HTTP ingest's MQTT link (one connection per instance, also the commands' and
        # the twin's way out) next; the command dispatcher and the twin's delivery, which need both, last.
        lifespan=[
            _backends_lifespan(settings),
            ingest_lifespan(ingest_backend),
            _commands_lifespan(commands_backend, ingest_backend.link),
            twin_lifespan(twin_backend),
        ],
        plugins=[problem_details_plugin()],
        # Only the JSON document (at /schema and /schema/openapi.json): the HTML viewers load their
        # JavaScript from CDNs, which operators' networks may not reach. Public, like most APIs' schemas:
        # it describes the routes, and every route still checks its caller.
        openapi_config=OpenAPIConfig(
            title="fleetbridge API",
            version=API_VERSION,
            openapi_router=Router("/schema", route_handlers=[], opt=PUBLIC, include_in_schema=False),
            render_plugins=[JsonRenderPlugin()],
        ),
        logging_config=LoggingConfig(configure_root_logger=False, log_exceptions="never"),
        after_exception=[log_server_error],
    )
    # Built now (about 15 ms) so that the one cached document is complete before anyone reads it.
    document_problems(app.openapi_schema)
    app.state[FIRMWARE_KEY] = firmware_backend(security.token_secret, settings.api.public_url)
    app.state[STOPPING_KEY] = Stopping()  # set by the server on SIGINT/SIGTERM (`api.server`)
    return app
