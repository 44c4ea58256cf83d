"""Broker URLs, read one way by every service: `mqtt://[user:password@]host[:port]`, or `mqtts://…` with
an optional `?cafile=PATH` (a CA bundle to trust instead of the system's, e.g. the development CA of
`fleet certs init`). User name and password are percent-decoded, so secrets may hold any character.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

MQTT_PORT: Final = 1883
MQTTS_PORT: Final = 8883


class BrokerUrlError(ValueError):
    """A broker URL that cannot be used; the message says what it must look like."""


@dataclass(frozen=True, slots=True)
class BrokerUrl:
    """Where the broker is, and who we are there."""

    host: str
    port: int
    tls: bool
    username: str | None
    password: str | None = field(repr=False)  # never in logs or tracebacks
    ca_file: str | None = None

    @classmethod
    def parse(cls, url: str) -> BrokerUrl:
        """Parse `url`; `BrokerUrlError` naming what is wrong."""
        parts = urlsplit(url)
        if parts.scheme not in {"mqtt", "mqtts"} or not parts.hostname:
            raise BrokerUrlError(f"broker URL {url!r} must look like mqtt://[user:password@]host[:port] (or mqtts://)")
        tls = parts.scheme == "mqtts"
        params = parse_qs(parts.query)
        if parts.query and (set(params) != {"cafile"} or len(params["cafile"]) != 1 or not tls):
            raise BrokerUrlError(f"broker URL {url!r}: the only query parameter is cafile=PATH, and only with mqtts://")
        return cls(
            host=parts.hostname,
            port=parts.port or (MQTTS_PORT if tls else MQTT_PORT),
            tls=tls,
            username=unquote(parts.username) if parts.username else None,
            password=unquote(parts.password) if parts.password else None,
            ca_file=params["cafile"][0] if params else None,
        )

    def ssl_context(self) -> ssl.SSLContext | None:
        """The TLS context to connect with (verifying against `ca_file`, else the system's CAs), or None."""
        return ssl.create_default_context(cafile=self.ca_file) if self.tls else None
