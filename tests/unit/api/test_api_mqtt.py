"""The API's broker URL: parsed once at start, a bad one refused with the setting's name."""

from __future__ import annotations

import pytest

from api.ingest.backend import build_ingest
from config import ApiSettings, Settings, SettingsError
from config.broker_url import BrokerUrl


def test_broker_url_reads_the_account_and_defaults_the_port() -> None:
    plain = BrokerUrl.parse("mqtt://fleetbridge-api:s%2Fcret@broker.example")
    tls = BrokerUrl.parse("mqtts://h:8884?cafile=/etc/ca.pem")

    assert (plain.host, plain.port, plain.tls, plain.username, plain.password) == (
        "broker.example",
        1883,
        False,
        "fleetbridge-api",
        "s/cret",
    )
    assert (tls.port, tls.tls, tls.ca_file, tls.username) == (8884, True, "/etc/ca.pem", None)


@pytest.mark.parametrize("url", ["http://h:1883", "mqtt://", "mqtt://h?cafile=/x", "mqtts://h?other=1"])
def test_build_ingest_refuses_a_broker_url_it_cannot_use_naming_the_setting(url: str) -> None:
    with pytest.raises(SettingsError, match="FLEETBRIDGE_API_MQTT_URL"):
        build_ingest(Settings(api=ApiSettings(mqtt_url=url)))


def test_build_ingest_without_a_broker_url_has_no_link() -> None:
    backend = build_ingest(Settings())

    assert backend.link is None
    assert backend.forwarder is None
