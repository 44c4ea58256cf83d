"""Render the Mosquitto config that tests and the local stack run, from the production `mosquitto.conf`.

The root `mosquitto.conf` is the one source of broker settings. A rendered variant keeps every
directive of it except the few in `OVERRIDDEN_DIRECTIVES`: the listeners (loopback, chosen ports; the
two TLS listeners, password and certificate identity, with the given certificate files, or left out),
where the persistence file goes, and the accounts (anonymous access in development, or the given
password and ACL files).
tests/unit/broker/test_config.py keeps the two from drifting apart.

Development mode (anonymous) also drops `use_username_as_clientid` from the listeners: Mosquitto refuses
every client without a user name under it, so an anonymous broker with it would serve nobody. Client
ids are then unbound, as they are in every broker the tests run anonymously.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from broker.certs import TlsFiles

log = logging.getLogger(__name__)

PRODUCTION_CONFIG: Final = Path(__file__).resolve().parents[1] / "mosquitto.conf"
LOOPBACK: Final = "127.0.0.1"

# Directives a rendered config sets itself; every other directive is copied unchanged.
OVERRIDDEN_DIRECTIVES: Final = frozenset(
    {
        "listener",
        "persistence_location",
        "allow_anonymous",
        "password_file",
        "acl_file",
        "cafile",
        "certfile",
        "keyfile",
        "crlfile",
    }
)

# Listener options that only make sense with accounts, left out of an anonymous (development) render.
ACCOUNT_ONLY_LISTENER_OPTIONS: Final = frozenset({"use_username_as_clientid"})


class BrokerConfigError(ValueError):
    """The production config cannot be read or rendered as asked."""


@dataclass(frozen=True, slots=True)
class Directive:
    """One `name value` line of a mosquitto.conf (Mosquitto allows comments only on their own lines)."""

    name: str
    value: str

    def line(self) -> str:
        """The directive as a config line."""
        return f"{self.name} {self.value}".rstrip()


def parse_config(text: str) -> list[Directive]:
    """The directives of a mosquitto.conf in order, without comments and blank lines."""
    directives: list[Directive] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        name, _, value = line.partition(" ")
        directives.append(Directive(name, value.strip()))
    return directives


def production_config_text(path: Path = PRODUCTION_CONFIG) -> str:
    """The production mosquitto.conf, read from the repository root."""
    try:
        return path.read_text()
    except FileNotFoundError:
        raise BrokerConfigError(
            f"{path} not found: the production mosquitto.conf lives at the root of a source checkout and is "
            "not part of an installed wheel; run from a checkout or pass the config text to render_config"
        ) from None


def render_config(
    source: str,
    *,
    port: int,
    data_dir: Path,
    anonymous: bool,
    password_file: Path | None = None,
    acl_file: Path | None = None,
    tls: TlsFiles | None = None,
    tls_port: int | None = None,
    cert_port: int | None = None,
) -> str:
    """The `source` config for a broker on 127.0.0.1:`port` keeping its state in `data_dir`.

    `anonymous=True` is development mode: anyone on loopback may connect (logged as a warning). Without
    it a `password_file` is required, or nobody could connect. The account files given replace the
    production paths; one not given is left out (no ACL file: every account may use every topic).

    With `tls` (and `tls_port`) the source's password TLS listener (a `certfile`, no certificate
    identity) is rendered on 127.0.0.1:`tls_port` with those files; without it the TLS listeners are
    left out entirely. With `cert_port` as well, the certificate-identity listener (the one with
    `use_identity_as_username true`) is rendered on 127.0.0.1:`cert_port`, checking client
    certificates against `tls.ca_file` and `tls.crl_file`.
    """
    _check_arguments(anonymous, password_file, (data_dir, acl_file), tls=tls, tls_port=tls_port, cert_port=cert_port)
    if anonymous:
        log.warning("anonymous MQTT access enabled: development mode, loopback only")
    # Anonymous clients have no user name to be their client id: Mosquitto refuses them all when the
    # listener says use_username_as_clientid, so development mode leaves it out (client ids unbound).
    dropped = ACCOUNT_ONLY_LISTENER_OPTIONS if anonymous else frozenset()
    settings, listeners = _split_listeners(parse_config(source))
    plain = [block for block in listeners if not _is_tls(block)]
    secure = [block for block in listeners if _is_tls(block) and not _is_certificate_identity(block)]
    identity = [block for block in listeners if _is_certificate_identity(block)]
    if len(plain) != 1 or len(secure) > 1 or len(identity) > 1:
        raise BrokerConfigError(
            "render_config supports one plain listener, at most one password TLS listener and at most one "
            f"certificate listener; the source has {len(plain)}, {len(secure)} and {len(identity)}"
        )
    if tls is not None and not secure:
        raise BrokerConfigError("TLS files were given but the source has no TLS listener (one with a certfile)")
    if cert_port is not None and not identity:
        raise BrokerConfigError("cert_port was given but the source has no use_identity_as_username listener")
    overrides: dict[str, list[Directive]] = {
        "persistence_location": [Directive("persistence_location", f"{data_dir.absolute()}/")],
        "allow_anonymous": [Directive("allow_anonymous", "true" if anonymous else "false")],
        "password_file": _optional("password_file", password_file),
        "acl_file": _optional("acl_file", acl_file),
    }
    rendered: list[Directive] = []
    for directive in settings:
        if directive.name in overrides:
            # Set each overridden directive once, where the source first has it, so the order of the
            # production file (global settings before the listeners) is kept.
            rendered.extend(overrides.pop(directive.name))
        elif directive.name not in OVERRIDDEN_DIRECTIVES:
            rendered.append(directive)
    # Settings the source lacks go before the listeners: after one they could read as its options.
    rendered.extend(d for name in sorted(overrides) for d in overrides[name])
    rendered.extend(_listener(plain[0], port, {}, dropped))
    if tls is not None and tls_port is not None:
        files = {"cafile": tls.ca_file, "certfile": tls.cert_file, "keyfile": tls.key_file}
        rendered.extend(_listener(secure[0], tls_port, files, dropped))
        if cert_port is not None and tls.crl_file is not None:
            rendered.extend(_listener(identity[0], cert_port, {**files, "crlfile": tls.crl_file}, dropped))
    where = f"{LOOPBACK}:{port}" + (f" (TLS on {tls_port})" if tls_port is not None else "")
    where += f" (certificates on {cert_port})" if cert_port is not None else ""
    header = f"# Rendered by broker.config from {PRODUCTION_CONFIG.name} for a broker on {where}; do not edit."
    return "\n".join([header, *(d.line() for d in rendered)]) + "\n"


def _check_arguments(
    anonymous: bool,
    password_file: Path | None,
    paths: tuple[Path | None, ...],
    *,
    tls: TlsFiles | None,
    tls_port: int | None,
    cert_port: int | None,
) -> None:
    """`BrokerConfigError` for a combination of `render_config` arguments no broker could run with."""
    if not anonymous and password_file is None:
        raise BrokerConfigError("a broker without anonymous access needs a password_file: nobody could connect")
    if (tls is None) != (tls_port is None):
        raise BrokerConfigError("a TLS listener needs both its files (tls) and its port (tls_port)")
    if cert_port is not None and (tls is None or tls.crl_file is None):
        # Without a CRL a certificate, once issued, could never be refused again.
        raise BrokerConfigError("the certificate listener (cert_port) needs the TLS files with a crl_file")
    tls_paths = (tls.ca_file, tls.cert_file, tls.key_file, tls.crl_file) if tls is not None else ()
    for path in (password_file, *paths, *tls_paths):
        if path is not None and "\n" in str(path):
            raise BrokerConfigError(f"path {path!r} contains a line break")


def _split_listeners(directives: list[Directive]) -> tuple[list[Directive], list[list[Directive]]]:
    """The settings before the first listener, and each listener with the options that follow it."""
    starts = [i for i, d in enumerate(directives) if d.name == "listener"]
    if not starts:
        return directives, []
    ends = [*starts[1:], len(directives)]
    return directives[: starts[0]], [directives[start:end] for start, end in zip(starts, ends, strict=True)]


def _is_tls(block: list[Directive]) -> bool:
    return any(d.name == "certfile" for d in block)


def _is_certificate_identity(block: list[Directive]) -> bool:
    return Directive("use_identity_as_username", "true") in block


def _listener(block: list[Directive], port: int, files: dict[str, Path], dropped: frozenset[str]) -> list[Directive]:
    """`block` bound to 127.0.0.1:`port`, its certificate paths replaced by `files`, without `dropped` options."""
    rendered = [Directive("listener", f"{port} {LOOPBACK}")]
    for directive in block[1:]:
        if directive.name in dropped:
            continue
        path = files.get(directive.name)
        rendered.append(Directive(directive.name, str(path.absolute())) if path is not None else directive)
    return rendered


def _optional(name: str, path: Path | None) -> list[Directive]:
    return [Directive(name, str(path.absolute()))] if path is not None else []
