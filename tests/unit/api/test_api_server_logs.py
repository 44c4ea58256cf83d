"""Tokens passed in URLs (the WebSocket's `?token=`) never reach uvicorn's log lines, and a request cut
by a stop is one line, not a traceback."""

from __future__ import annotations

import asyncio
import logging

from api.server import ShutdownCancelFilter, UrlCredentialsFilter, log_config


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("uvicorn.error", logging.INFO, __file__, 1, message, args, None)


def test_url_credentials_filter_redacts_the_token_and_keeps_the_rest() -> None:
    handshake = record('%s - "WebSocket %s" [accepted]', "127.0.0.1:5000", "/api/v1/live?token=eyJ.abc.def&x=1")
    access = record('%s - "%s %s HTTP/%s" %d', "127.0.0.1:5000", "GET", "/api/v1/live?a=1&token=fbk_secret", "1.1", 403)

    assert UrlCredentialsFilter().filter(handshake)
    assert UrlCredentialsFilter().filter(access)

    assert handshake.getMessage() == '127.0.0.1:5000 - "WebSocket /api/v1/live?token=[redacted]&x=1" [accepted]'
    assert access.getMessage() == '127.0.0.1:5000 - "GET /api/v1/live?a=1&token=[redacted] HTTP/1.1" 403'


def test_log_config_filters_the_loggers_that_print_urls() -> None:
    config = log_config()

    assert config["filters"]["url_credentials"]["()"] is UrlCredentialsFilter
    assert config["loggers"]["uvicorn.error"]["filters"] == ["url_credentials", "shutdown_cancel"]
    assert config["loggers"]["uvicorn.access"]["filters"] == ["url_credentials"]


def _failed_request(exc: BaseException) -> logging.LogRecord:
    return logging.LogRecord(
        "uvicorn.error",
        logging.ERROR,
        __file__,
        1,
        "Exception in ASGI application\n",
        None,
        (
            type(exc),
            exc,
            None,
        ),
    )


def test_a_request_cancelled_at_shutdown_is_one_line_without_traceback() -> None:
    record = _failed_request(asyncio.CancelledError("Task cancelled, timeout graceful shutdown exceeded"))

    assert ShutdownCancelFilter().filter(record)

    assert record.exc_info is None
    assert record.levelno == logging.WARNING
    assert "cancelled" in record.getMessage()
    assert "Traceback" not in logging.Formatter().format(record)


def test_a_failing_request_keeps_its_traceback() -> None:
    record = _failed_request(ValueError("a bug"))

    assert ShutdownCancelFilter().filter(record)

    assert record.exc_info is not None
    assert record.levelno == logging.ERROR
