"""Broker URLs: mqtt:// and mqtts://, default ports, percent-encoded credentials, clear errors."""

from __future__ import annotations

import pytest

from firmware_sim.address import BrokerAddress, parse_broker_url
from firmware_sim.errors import BrokerUrlError


def test_parse_broker_url_defaults_port_by_scheme() -> None:
    assert parse_broker_url("mqtt://broker.example") == BrokerAddress("broker.example", 1883)
    assert parse_broker_url("mqtts://broker.example") == BrokerAddress("broker.example", 8883, tls=True)


def test_parse_broker_url_reads_percent_encoded_credentials() -> None:
    address = parse_broker_url("mqtt://sim%40fleet:p%3Ass@127.0.0.1:2883/")
    assert address == BrokerAddress("127.0.0.1", 2883, username="sim@fleet", password="p:ss")


def test_broker_address_never_shows_its_password() -> None:
    address = parse_broker_url("mqtts://user:secret@[::1]:9000")
    assert str(address) == "mqtts://user@[::1]:9000"
    assert "secret" not in str(address)


@pytest.mark.parametrize(
    "url", ["http://host", "mqtt://", "mqtt://host:99999", "mqtt://host:0", "mqtt://host/topic", "mqtt://host?x=1"]
)
def test_parse_broker_url_rejects_what_is_not_a_broker(url: str) -> None:
    with pytest.raises(BrokerUrlError, match="broker URL"):
        parse_broker_url(url)


def test_parse_broker_url_reads_the_ca_file_of_an_mqtts_url() -> None:
    address = parse_broker_url("mqtts://127.0.0.1:8883?cafile=/srv/fleet/certs/ca.pem")

    assert address == BrokerAddress("127.0.0.1", 8883, tls=True, ca_file="/srv/fleet/certs/ca.pem")


@pytest.mark.parametrize(
    "url", ["mqtt://host?cafile=/ca.pem", "mqtts://host?cafile=/a&cafile=/b", "mqtts://host?cafile=/a&x=1"]
)
def test_parse_broker_url_rejects_a_ca_file_without_tls_or_other_parameters(url: str) -> None:
    with pytest.raises(BrokerUrlError, match="cafile"):
        parse_broker_url(url)
