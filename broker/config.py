"""Render the Mosquitto config that tests and the local stack run, from the production `mosquitto.conf`.

The root `mosquitto.conf` is the one source of broker settings. A rendered variant keeps every
directive of it except the few in `OVERRIDDEN_DIRECTIVES`: the listener (loopback, a chosen port),
where the persistence file goes, and the accounts (anonymous access in development, or the given
password and ACL files). tests/unit/broker/test_config.py keeps the two from drifting apart.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Final

log = logging.getLogger(__name__)

PRODUCTION_CONFIG: Final = Path(__file__).resolve().parents[1] / "mosquitto.conf"
LOOPBACK: Final = "127.0.0.1"

# Directives a rendered config sets itself; every other directive is copied unchanged.
OVERRIDDEN_DIRECTIVES: Final = frozenset(
    {"listener", "persistence_location", "allow_anonymous", "password_file", "acl_file"}
)


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
) -> str:
    """The `source` config for a broker on 127.0.0.1:`port` keeping its state in `data_dir`.

    `anonymous=True` is development mode: anyone on loopback may connect (logged as a warning). Without
    it a `password_file` is required, or nobody could connect. The account files given replace the
    production paths; one not given is left out (no ACL file: every account may use every topic).
    """
    if not anonymous and password_file is None:
        raise BrokerConfigError("a broker without anonymous access needs a password_file: nobody could connect")
    for path in (data_dir, password_file, acl_file):
        if path is not None and "\n" in str(path):
            raise BrokerConfigError(f"path {path!r} contains a line break")
    if anonymous:
        log.warning("anonymous MQTT access enabled: development mode, loopback only")
    directives = parse_config(source)
    listeners = [d for d in directives if d.name == "listener"]
    if len(listeners) != 1:
        raise BrokerConfigError(f"render_config supports exactly one listener; the source has {len(listeners)}")
    overrides: dict[str, list[Directive]] = {
        "listener": [Directive("listener", f"{port} {LOOPBACK}")],
        "persistence_location": [Directive("persistence_location", f"{data_dir.absolute()}/")],
        "allow_anonymous": [Directive("allow_anonymous", "true" if anonymous else "false")],
        "password_file": _optional("password_file", password_file),
        "acl_file": _optional("acl_file", acl_file),
    }
    rendered: list[Directive] = []
    for directive in directives:
        if directive.name in overrides:
            # Set each overridden directive once, where the source first has it, so the order of the
            # production file (global settings before the listener) is kept.
            rendered.extend(overrides.pop(directive.name))
        elif directive.name not in OVERRIDDEN_DIRECTIVES:
            rendered.append(directive)
    missing = [d for name in sorted(overrides) for d in overrides[name]]
    listener_at = next(i for i, d in enumerate(rendered) if d.name == "listener")
    # Settings the source lacks go before the listener: after it they could read as listener options.
    rendered[listener_at:listener_at] = missing
    header = (
        f"# Rendered by broker.config from {PRODUCTION_CONFIG.name} for a broker on {LOOPBACK}:{port}; do not edit."
    )
    return "\n".join([header, *(d.line() for d in rendered)]) + "\n"


def _optional(name: str, path: Path | None) -> list[Directive]:
    return [Directive(name, str(path.absolute()))] if path is not None else []
