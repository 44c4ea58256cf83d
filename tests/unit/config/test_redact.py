"""Passwords kept out of printed URLs and DSNs."""

from __future__ import annotations

import logging

import pytest

from config.broker_url import BrokerUrl
from config.redact import redact_secret, redact_url


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        ("postgresql://fleet:s3cret@db:5432/fleet", "postgresql://fleet:***@db:5432/fleet"),
        ("redis://:s3cret@cache:6379/0", "redis://:***@cache:6379/0"),
        ("mqtt://bridge:p%40ss@broker:1883", "mqtt://bridge:***@broker:1883"),
        ("postgresql://fleet@db/fleet?password=s3cret", "postgresql://fleet@db/fleet?password=***"),
        ("host=db password='s3 cret' dbname=fleet", "host=db password=*** dbname=fleet"),
        ("redis://127.0.0.1:6379/0", "redis://127.0.0.1:6379/0"),
        ("", ""),
    ],
)
def test_redact_url_masks_only_the_password(url: str, shown: str) -> None:
    assert redact_url(url) == shown


def test_redact_secret_shows_whether_it_is_set() -> None:
    assert (redact_secret("x"), redact_secret("")) == ("***", "")


def test_broker_url_repr_and_logs_never_show_the_password(caplog: pytest.LogCaptureFixture) -> None:
    url = BrokerUrl.parse("mqtt://bridge:s3cret@broker:1883")
    logging.getLogger("test").warning("connecting to %s", url)
    assert "s3cret" not in repr(url)
    assert "s3cret" not in caplog.text
    assert url.password == "s3cret"
