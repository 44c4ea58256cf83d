"""Broker URLs (the bridge's and the API's): scheme, credentials and the CA to trust for mqtts://."""

from __future__ import annotations

import ssl

import pytest

from config.broker_url import BrokerUrl, BrokerUrlError


def test_broker_url_reads_the_ca_file_of_an_mqtts_url() -> None:
    address = BrokerUrl.parse("mqtts://bridge:secret@127.0.0.1:8883?cafile=/srv/fleet/certs/ca.pem")

    assert address == BrokerUrl("127.0.0.1", 8883, True, "bridge", "secret", "/srv/fleet/certs/ca.pem")


def test_broker_url_without_tls_connects_in_plain_text() -> None:
    address = BrokerUrl.parse("mqtt://127.0.0.1")

    assert address.port == 1883
    assert address.ssl_context() is None


def test_broker_url_with_tls_verifies_the_server() -> None:
    context = BrokerUrl.parse("mqtts://127.0.0.1").ssl_context()

    assert isinstance(context, ssl.SSLContext)
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


@pytest.mark.parametrize("url", ["mqtt://host?cafile=/ca.pem", "mqtts://host?cafile=/a&cafile=/b", "mqtts://host?x=1"])
def test_broker_url_rejects_a_ca_file_without_tls_or_other_parameters(url: str) -> None:
    with pytest.raises(BrokerUrlError, match="cafile"):
        BrokerUrl.parse(url)
