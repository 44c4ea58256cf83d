"""The rendered broker config must stay the production mosquitto.conf plus a few deliberate overrides."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from broker.config import (
    OVERRIDDEN_DIRECTIVES,
    BrokerConfigError,
    Directive,
    parse_config,
    production_config_text,
    render_config,
)

DATA_DIR = Path("/srv/fleet/mosquitto")


def _settings(directives: list[Directive], name: str) -> list[str]:
    return [d.value for d in directives if d.name == name]


def _render(
    *, anonymous: bool = True, password_file: Path | None = None, acl_file: Path | None = None
) -> list[Directive]:
    text = render_config(
        production_config_text(),
        port=18830,
        data_dir=DATA_DIR,
        anonymous=anonymous,
        password_file=password_file,
        acl_file=acl_file,
    )
    return parse_config(text)


def test_render_keeps_every_production_directive_that_is_not_overridden() -> None:
    production = [d for d in parse_config(production_config_text()) if d.name not in OVERRIDDEN_DIRECTIVES]
    rendered = [d for d in _render() if d.name not in OVERRIDDEN_DIRECTIVES]

    assert Counter(rendered) == Counter(production)
    assert rendered == production, "the production order (settings before the listener) must be kept"


def test_render_sets_loopback_listener_and_data_dir() -> None:
    rendered = _render()

    assert _settings(rendered, "listener") == ["18830 127.0.0.1"]
    assert rendered[-1].name == "listener", "settings after a listener line could read as listener options"
    assert _settings(rendered, "persistence_location") == [f"{DATA_DIR}/"]


def test_render_in_development_mode_is_anonymous_without_account_files(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="broker.config"):
        rendered = _render(anonymous=True)

    assert _settings(rendered, "allow_anonymous") == ["true"]
    assert _settings(rendered, "password_file") == []
    assert _settings(rendered, "acl_file") == []
    assert "anonymous MQTT access enabled: development mode, loopback only" in caplog.text


def test_render_with_accounts_uses_the_given_files(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.WARNING, logger="broker.config"):
        rendered = _render(anonymous=False, password_file=Path("/tmp/pw"), acl_file=Path("/tmp/acl"))

    assert _settings(rendered, "allow_anonymous") == ["false"]
    assert _settings(rendered, "password_file") == ["/tmp/pw"]
    assert _settings(rendered, "acl_file") == ["/tmp/acl"]
    assert "anonymous" not in caplog.text


def test_render_without_anonymous_access_requires_a_password_file() -> None:
    with pytest.raises(BrokerConfigError, match="password_file"):
        _render(anonymous=False)


def test_render_adds_account_files_the_source_lacks_before_the_listener() -> None:
    source = "persistence true\nallow_anonymous false\nlistener 1883\n"

    text = render_config(source, port=1, data_dir=DATA_DIR, anonymous=False, password_file=Path("/tmp/pw"))

    assert [d.name for d in parse_config(text)] == [
        "persistence",
        "allow_anonymous",
        "password_file",
        "persistence_location",
        "listener",
    ]


def test_render_refuses_a_source_with_several_listeners() -> None:
    with pytest.raises(BrokerConfigError, match="exactly one listener"):
        render_config("listener 1883\nlistener 8883\n", port=1, data_dir=DATA_DIR, anonymous=True)


def test_production_config_sets_the_delivery_settings_deliberately() -> None:
    production = {d.name: d.value for d in parse_config(production_config_text())}

    assert production["persistence"] == "true"
    assert int(production["autosave_interval"]) <= 10
    # A 5-minute database outage at 2,000 msg/s queues 600,000 messages for the bridge's session.
    assert int(production["max_queued_messages"]) >= 600_000
    assert int(production["max_queued_bytes"]) >= 600_000 * 1024
    assert int(production["max_inflight_messages"]) >= 1000
    assert production["allow_anonymous"] == "false"
    assert "message_size_limit" not in production
    assert not any(d.value.startswith("websockets") for d in parse_config(production_config_text()))


def test_parse_config_skips_comments_and_blank_lines() -> None:
    text = "# a comment\n\n  log_type error\nlog_type warning\nlistener 1883\n"

    assert parse_config(text) == [
        Directive("log_type", "error"),
        Directive("log_type", "warning"),
        Directive("listener", "1883"),
    ]


def test_production_config_text_names_the_missing_file(tmp_path: Path) -> None:
    missing = tmp_path / "mosquitto.conf"

    with pytest.raises(BrokerConfigError, match=str(missing)):
        production_config_text(missing)
