"""Tokens passed in URLs (the WebSocket's `?token=`) never reach uvicorn's log lines."""

from __future__ import annotations

import logging

from api.server import UrlCredentialsFilter, log_config


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
    assert config["loggers"]["uvicorn.error"]["filters"] == ["url_credentials"]
    assert config["loggers"]["uvicorn.access"]["filters"] == ["url_credentials"]
