"""Run the API under uvicorn: `serve` for `python -m api` and the `fleet` CLI, `running` in-process."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import os
import re
import socket
import threading
from collections.abc import AsyncIterator
from types import FrameType
from typing import Any, Final

import uvicorn
from litestar import Litestar
from uvicorn.config import LOGGING_CONFIG

from api.app import create_app
from api.stopping import stopping_of
from config import Settings

GRACEFUL_SHUTDOWN_S: Final = 5
# From the first SIGINT/SIGTERM, the longest a stop may take: graceful shutdown (open requests, then the
# lifespan's cleanup, each bounded) normally ends well before; past this the process exits anyway, as
# a stop must never depend on the state of the servers behind the API.
STOP_DEADLINE_S: Final = 10.0
STOP_DEADLINE_EXIT_CODE: Final = 1
STARTUP_POLL_S: Final = 0.01
# The WebSocket takes its credentials as `?token=` (browsers cannot set its headers); uvicorn logs URLs.
_CREDENTIALS_IN_URL: Final = re.compile(r"([?&]token=)[^&\s\"]*")


class UrlCredentialsFilter(logging.Filter):
    """Blanks `?token=…` in uvicorn's log lines (access lines and WebSocket handshakes), so logs hold no tokens."""

    def filter(self, record: logging.LogRecord) -> bool:
        """Redact the record's arguments in place; never drops a record."""
        if isinstance(record.args, tuple):
            record.args = tuple(
                _CREDENTIALS_IN_URL.sub(r"\1[redacted]", arg) if isinstance(arg, str) else arg for arg in record.args
            )
        return True


class ShutdownCancelFilter(logging.Filter):
    """Turns uvicorn's traceback for a request cancelled at the graceful-shutdown deadline into one line.

    Such a request (a long poll, a query on a server that stopped answering) was cut on purpose by the
    stop; its traceback says nothing about a fault in the API.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite a cancelled request's record in place; never drops a record."""
        exc = record.exc_info[1] if record.exc_info else None
        if isinstance(exc, asyncio.CancelledError):
            record.msg, record.args = "a request still running at the shutdown deadline was cancelled", ()
            record.exc_info, record.exc_text = None, None
            record.levelno, record.levelname = logging.WARNING, logging.getLevelName(logging.WARNING)
        return True


def log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration: `UrlCredentialsFilter` on the loggers that print URLs, and
    `ShutdownCancelFilter` on its error logger."""
    config = copy.deepcopy(LOGGING_CONFIG)
    filters = config.setdefault("filters", {})
    filters["url_credentials"] = {"()": UrlCredentialsFilter}
    filters["shutdown_cancel"] = {"()": ShutdownCancelFilter}
    config["loggers"].setdefault("uvicorn.access", {})["filters"] = ["url_credentials"]
    config["loggers"].setdefault("uvicorn.error", {})["filters"] = ["url_credentials", "shutdown_cancel"]
    return config


class DeadlineServer(uvicorn.Server):
    """uvicorn's server with a deadline on stopping: `STOP_DEADLINE_S` after the first signal the
    process exits whatever its shutdown still waits for (a server behind the API that does not answer,
    a library that does not let go)."""

    def __init__(self, config: uvicorn.Config, *, deadline_s: float = STOP_DEADLINE_S) -> None:
        super().__init__(config)
        self._deadline_s = deadline_s
        self._watchdog: threading.Timer | None = None

    def handle_exit(self, sig: int, frame: FrameType | None) -> None:
        """Start the graceful shutdown (uvicorn's), and the deadline after which the process exits."""
        super().handle_exit(sig, frame)
        app = self.config.app
        if isinstance(app, Litestar):
            stopping_of(app.state).set()  # long polls answer now instead of being cut at the deadline
        if self._watchdog is None:
            self._watchdog = threading.Timer(self._deadline_s, _exit_at_deadline, args=(self._deadline_s,))
            self._watchdog.daemon = True
            self._watchdog.start()


def _exit_at_deadline(deadline_s: float) -> None:
    logging.getLogger("api").error("still stopping %.0f s after the signal: exiting now", deadline_s)
    logging.shutdown()
    os._exit(STOP_DEADLINE_EXIT_CODE)


def server_config(settings: Settings, **overrides: Any) -> uvicorn.Config:
    """The uvicorn configuration serving a fresh app for `settings` on `settings.api.host:port`."""
    options: dict[str, Any] = {
        "host": settings.api.host,
        "port": settings.api.port,
        "loop": "uvloop",
        # The sans-I/O implementation of `websockets`: its legacy one is deprecated.
        "ws": "websockets-sansio",
        "lifespan": "on",
        "timeout_graceful_shutdown": GRACEFUL_SHUTDOWN_S,
        "log_config": log_config(),
    }
    return uvicorn.Config(create_app(settings), **(options | overrides))


def serve(settings: Settings) -> None:
    """Serve until interrupted (blocking; uvicorn owns the event loop and the signals); a stop takes at
    most `STOP_DEADLINE_S`."""
    DeadlineServer(server_config(settings)).run()


@contextlib.asynccontextmanager
async def running(settings: Settings, *, host: str = "127.0.0.1") -> AsyncIterator[str]:
    """Serve a fresh app in the current event loop on a free port of `host`; yield its base URL.

    For tests and in-process stacks: it leaves global logging alone and stops when the block ends.
    """
    config = server_config(settings, host=host, log_config=None)
    # IPPROTO_TCP explicitly: asyncio enables TCP_NODELAY only for such sockets, and without it every
    # response after the first on a kept-alive connection waits ~40 ms for delayed ACKs.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP) as listener:
        listener.bind((host, 0))
        port = listener.getsockname()[1]
        server = uvicorn.Server(config)
        task = asyncio.create_task(server.serve(sockets=[listener]), name=f"api-{port}")
        try:
            while not server.started:
                if task.done():
                    task.result()  # a startup failure surfaces here
                    raise RuntimeError("the API server stopped during startup")
                await asyncio.sleep(STARTUP_POLL_S)
            yield f"http://{host}:{port}"
        finally:
            server.should_exit = True
            await task
