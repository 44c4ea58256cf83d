"""What the twin shares across requests of one app: its delivery and its report recorder, wired to the
API's MQTT link when there is one, run by the app's lifespan, reached by injection (`twin_delivery`)."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Callable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from typing import Final

from litestar import Litestar
from litestar.datastructures import State

from api.backends import STATE_KEY as BACKENDS_KEY
from api.backends import Backends
from api.mqtt import MqttLink
from api.twin.delivery import TwinDelivery
from api.twin.reported import ReportRecorder
from models.topics import TopicKind, wildcard

STATE_KEY: Final = "twin"
STOP_WAIT_S: Final = 1.0


@dataclass(frozen=True, slots=True)
class TwinBackend:
    """The twin's delivery (publishing desired documents) and recorder (of the devices' reports)."""

    delivery: TwinDelivery
    recorder: ReportRecorder


def build_twin(link: MqttLink | None) -> TwinBackend:
    """The twin over `link` (None: documents are stored and wait until an instance with a link publishes them)."""
    recorder = ReportRecorder()
    if link is not None:
        link.route(wildcard(TopicKind.CONFIG_REPORTED), recorder.heard)
    return TwinBackend(delivery=TwinDelivery(link), recorder=recorder)


def twin_lifespan(backend: TwinBackend) -> Callable[[Litestar], AbstractAsyncContextManager[None]]:
    """The app lifespan that shares `backend` and runs its delivery sweeps and report writer.

    After the backends' lifespan (it needs their database pool).
    """

    @contextlib.asynccontextmanager
    async def lifespan(app: Litestar) -> AsyncIterator[None]:
        app.state[STATE_KEY] = backend
        backends = app.state[BACKENDS_KEY]
        if not isinstance(backends, Backends):
            raise TypeError("the twin's lifespan must run after the backends' lifespan")
        tasks = [
            asyncio.create_task(backend.delivery.run(backends.pool), name="twin-delivery"),
            asyncio.create_task(backend.recorder.run(backends.pool), name="twin-reports"),
        ]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(STOP_WAIT_S):
                    await asyncio.gather(*tasks, return_exceptions=True)

    return lifespan


def provide_twin_delivery(state: State) -> TwinDelivery:
    """The twin's delivery, from `app.state`."""
    backend = state.get(STATE_KEY)
    if not isinstance(backend, TwinBackend):
        raise TypeError("app.state holds no TwinBackend: the API's lifespan has not run")
    return backend.delivery
