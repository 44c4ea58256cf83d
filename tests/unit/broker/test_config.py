"""The rendered broker config must stay the production mosquitto.conf plus a few deliberate overrides."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import pytest

from broker.certs import TlsFiles
from broker.config import (
    OVERRIDDEN_DIRECTIVES,
    BrokerConfigError,
    Directive,
    parse_config,
    production_config_text,
    render_config,
)

DATA_DIR = Path("/srv/fleet/mosquitto")
TLS = TlsFiles(
    Path("/srv/fleet/certs/ca.pem"),
    Path("/srv/fleet/certs/server.pem"),
    Path("/srv/fleet/certs/server.key"),
    Path("/srv/fleet/certs/crl.pem"),
)


def _settings(directives: list[Directive], name: str) -> list[str]:
    return [d.value for d in directives if d.name == name]


def _render(
    *,
    anonymous: bool = True,
    password_file: Path | None = None,
    acl_file: Path | None = None,
    tls: TlsFiles | None = None,
    certificates: bool = False,
) -> list[Directive]:
    text = render_config(
        production_config_text(),
        port=18830,
        data_dir=DATA_DIR,
        anonymous=anonymous,
        password_file=password_file,
        acl_file=acl_file,
        tls=tls,
        tls_port=18883 if tls is not None else None,
        cert_port=18884 if certificates else None,
    )
    return parse_config(text)


def test_render_keeps_every_production_directive_that_is_not_overridden() -> None:
    production = [d for d in parse_config(production_config_text()) if d.name not in OVERRIDDEN_DIRECTIVES]
    rendered = [
        d
        for d in _render(anonymous=False, password_file=Path("/tmp/pw"), tls=TLS, certificates=True)
        if d.name not in OVERRIDDEN_DIRECTIVES
    ]

    assert Counter(rendered) == Counter(production)
    assert rendered == production, "the production order (settings before the listeners) must be kept"


def test_render_with_tls_binds_both_listeners_to_loopback_with_the_given_files() -> None:
    rendered = _render(tls=TLS)

    listeners = [i for i, d in enumerate(rendered) if d.name == "listener"]
    assert [rendered[i].value for i in listeners] == ["18830 127.0.0.1", "18883 127.0.0.1"]
    tls_options = {d.name: d.value for d in rendered[listeners[1] + 1 :]}
    assert tls_options == {
        "cafile": str(TLS.ca_file),
        "certfile": str(TLS.cert_file),
        "keyfile": str(TLS.key_file),
        "tls_version": "tlsv1.2",
        "require_certificate": "false",
    }
    assert not {"cafile", "certfile", "keyfile"} & {d.name for d in rendered[: listeners[1]]}


def test_render_without_tls_leaves_the_tls_listener_and_its_options_out() -> None:
    rendered = _render()

    assert _settings(rendered, "listener") == ["18830 127.0.0.1"]
    assert not {"cafile", "certfile", "keyfile", "tls_version", "require_certificate"} & {d.name for d in rendered}


def test_render_needs_both_tls_files_and_tls_port() -> None:
    with pytest.raises(BrokerConfigError, match="tls_port"):
        render_config(production_config_text(), port=1, data_dir=DATA_DIR, anonymous=True, tls=TLS)


def _listener_options(directives: list[Directive], listener: str) -> dict[str, str]:
    start = directives.index(Directive("listener", listener))
    following = [i for i, d in enumerate(directives) if d.name == "listener" and i > start]
    return {d.name: d.value for d in directives[start + 1 : following[0] if following else None]}


def test_production_config_serves_tls_with_passwords_and_optional_client_certificates() -> None:
    production = parse_config(production_config_text())

    options = _listener_options(production, "8883")
    assert options["tls_version"] == "tlsv1.2"
    assert options["require_certificate"] == "false"
    assert {d.name: d.value for d in production}["per_listener_settings"] == "false"
    assert "use_identity_as_username" not in options


def test_production_config_logs_devices_in_by_certificate_on_its_own_listener_with_a_crl() -> None:
    options = _listener_options(parse_config(production_config_text()), "8884")

    assert options["require_certificate"] == "true"
    assert options["use_identity_as_username"] == "true"
    assert options["crlfile"].endswith("crl.pem")
    assert options["tls_version"] == "tlsv1.2"


def test_render_with_certificates_binds_the_certificate_listener_to_loopback_with_the_crl() -> None:
    rendered = _render(anonymous=False, password_file=Path("/tmp/pw"), tls=TLS, certificates=True)

    assert _settings(rendered, "listener") == ["18830 127.0.0.1", "18883 127.0.0.1", "18884 127.0.0.1"]
    options = _listener_options(rendered, "18884 127.0.0.1")
    assert options["crlfile"] == str(TLS.crl_file)
    assert (options["cafile"], options["certfile"], options["keyfile"]) == (
        str(TLS.ca_file),
        str(TLS.cert_file),
        str(TLS.key_file),
    )
    assert options["use_identity_as_username"] == "true"
    assert "crlfile" not in _listener_options(rendered, "18883 127.0.0.1")


def test_render_without_certificates_leaves_the_certificate_listener_out() -> None:
    rendered = _render(anonymous=False, password_file=Path("/tmp/pw"), tls=TLS)

    assert _settings(rendered, "listener") == ["18830 127.0.0.1", "18883 127.0.0.1"]
    assert _settings(rendered, "use_identity_as_username") == []
    assert _settings(rendered, "crlfile") == []


def test_render_refuses_a_certificate_listener_without_a_revocation_list() -> None:
    without_crl = TlsFiles(TLS.ca_file, TLS.cert_file, TLS.key_file)

    with pytest.raises(BrokerConfigError, match="crl_file"):
        render_config(
            production_config_text(),
            port=1,
            data_dir=DATA_DIR,
            anonymous=False,
            password_file=Path("/tmp/pw"),
            tls=without_crl,
            tls_port=2,
            cert_port=3,
        )


def test_production_config_binds_every_listeners_client_ids_to_user_names() -> None:
    production = parse_config(production_config_text())

    listeners = [i for i, d in enumerate(production) if d.name == "listener"]
    ends = [*listeners[1:], len(production)]
    for start, end in zip(listeners, ends, strict=True):
        assert Directive("use_username_as_clientid", "true") in production[start:end], production[start]
    # Mosquitto 2.0.11 ignores use_username_as_clientid under per_listener_settings true.
    assert Directive("per_listener_settings", "false") in production


def test_render_with_accounts_keeps_client_ids_bound_and_development_mode_drops_the_binding() -> None:
    with_accounts = _render(anonymous=False, password_file=Path("/tmp/pw"), tls=TLS)
    anonymous = _render(anonymous=True, tls=TLS)

    assert _settings(with_accounts, "use_username_as_clientid") == ["true", "true"]
    assert (
        _settings(
            _render(anonymous=False, password_file=Path("/tmp/pw"), tls=TLS, certificates=True),
            "use_username_as_clientid",
        )
        == ["true"] * 3
    )
    # Under it Mosquitto refuses every client without a user name: an anonymous broker would serve nobody.
    assert _settings(anonymous, "use_username_as_clientid") == []


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
    with pytest.raises(BrokerConfigError, match="one plain listener"):
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
