"""Where the simulated devices connect: a broker URL parsed once into a value object."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final
from urllib.parse import parse_qs, unquote, urlsplit

from firmware_sim.errors import BrokerUrlError

MQTT_PORT: Final = 1883
MQTTS_PORT: Final = 8883
_TLS_SCHEMES: Final = {"mqtt": False, "mqtts": True}


@dataclass(frozen=True, slots=True)
class BrokerAddress:
    """A broker endpoint and the credentials that came with its URL.

    A simulated device always authenticates with its own id as user name (the broker's ACL confines
    each device to its own topics by user name), so `username` matters only to other clients; the
    `password` is offered by every simulated device unless it is given one of its own.
    """

    host: str
    port: int
    tls: bool = False
    username: str | None = None
    password: str | None = None
    # The CA bundle to trust for mqtts:// (`?cafile=/path/ca.pem`); None: the system's.
    ca_file: str | None = None

    def __str__(self) -> str:
        # Never print a password: URLs end up in logs and progress lines.
        scheme = "mqtts" if self.tls else "mqtt"
        user = f"{self.username}@" if self.username else ""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{user}{host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    """Parse `mqtt://[user[:password]@]host[:port]` (default port 1883) or `mqtts://…` (TLS, 8883).

    User name and password may be percent-encoded. An `mqtts://` URL may name the CA to trust,
    `mqtts://host:8883?cafile=/path/ca.pem` (e.g. the development CA of `fleet certs init`), the same
    way the bridge's broker URL does. Raise `BrokerUrlError` naming what is wrong.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in _TLS_SCHEMES:
        raise BrokerUrlError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise BrokerUrlError(f"broker URL {url!r}: no host")
    if parts.path not in ("", "/") or parts.fragment:
        raise BrokerUrlError(f"broker URL {url!r}: expected no path or fragment")
    ca_file = _ca_file(url, parts.query, tls=_TLS_SCHEMES[scheme])
    try:
        port = parts.port
    except ValueError:
        raise BrokerUrlError(f"broker URL {url!r}: port must be a number from 1 to 65535") from None
    tls = _TLS_SCHEMES[scheme]
    if port is None:
        port = MQTTS_PORT if tls else MQTT_PORT
    if port == 0:
        raise BrokerUrlError(f"broker URL {url!r}: port must be a number from 1 to 65535")
    return BrokerAddress(
        host=parts.hostname,
        port=port,
        tls=tls,
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password is not None else None,
        ca_file=ca_file,
    )


def _ca_file(url: str, query: str, *, tls: bool) -> str | None:
    """The `cafile` of a broker URL's query, the only parameter it may have (and only with TLS)."""
    if not query:
        return None
    try:
        params = parse_qs(query, strict_parsing=True)
    except ValueError:
        params = {}
    if set(params) != {"cafile"} or len(params["cafile"]) != 1 or not tls:
        raise BrokerUrlError(f"broker URL {url!r}: the only query parameter is cafile=PATH, and only with mqtts://")
    return params["cafile"][0]
