"""Run the API under uvicorn: `serve` for `python -m api` and the `fleet` CLI, `running` in-process."""

from __future__ import annotations

import asyncio
import contextlib
import copy
import logging
import re
import socket
from collections.abc import AsyncIterator
from typing import Any, Final

import uvicorn
from uvicorn.config import LOGGING_CONFIG

from api.app import create_app
from config import Settings

GRACEFUL_SHUTDOWN_S: Final = 5
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


def log_config() -> dict[str, Any]:
    """uvicorn's own logging configuration, with `UrlCredentialsFilter` on the loggers that print URLs."""
    config = copy.deepcopy(LOGGING_CONFIG)
    config.setdefault("filters", {})["url_credentials"] = {"()": UrlCredentialsFilter}
    for name in ("uvicorn.error", "uvicorn.access"):
        config["loggers"].setdefault(name, {})["filters"] = ["url_credentials"]
    return config


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
    """Serve until interrupted (blocking; uvicorn owns the event loop and the signals)."""
    uvicorn.Server(server_config(settings)).run()


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
