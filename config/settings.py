"""Settings: one frozen dataclass per section, filled from a mapping (the environment) and TOML.

Each field `f` of section `s` is read from `FLEETBRIDGE_<S>_<F>` (upper case), then from `[s] f` in the
TOML file named by `FLEETBRIDGE_CONFIG`, then its default. A value of the wrong type or out of range
(NaN and infinities included) fails at start with a `SettingsError` that names the variable and what it
expects; so does a `FLEETBRIDGE_*` variable that nothing reads (a misspelt name would otherwise be
ignored without a word), with the closest valid name. Secrets (passwords in URLs, the JWT secret) are
masked in the settings' printed form.
"""

from __future__ import annotations

import dataclasses
import difflib
import math
import tomllib
import types
import typing
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final, TypeVar

from config.redact import redact_secret, redact_url

ENV_PREFIX = "FLEETBRIDGE_"
CONFIG_FILE_VAR = "FLEETBRIDGE_CONFIG"
# `FLEETBRIDGE_*` variables read on purpose outside these settings, so not refused as misspelt: the test
# suite's existing servers (tests/conftest.py) and the fault suite's sizes (tests/faults/harness.py).
OTHER_VARIABLES: Final = frozenset(
    {CONFIG_FILE_VAR, "FLEETBRIDGE_TEST_MQTT_URL", "FLEETBRIDGE_TEST_REDIS_URL", "FLEETBRIDGE_TEST_DATABASE_URL"}
)
OTHER_PREFIXES: Final = ("FLEETBRIDGE_FAULTS_",)


class SettingsError(ValueError):
    """A setting could not be read; the message names the variable and what it expects."""


def _bounded(default: Any, *, low: float | None = None, high: float | None = None, doc: str = "") -> Any:
    return field(default=default, metadata={"low": low, "high": high, "doc": doc})


def _url(default: str = "") -> Any:
    """A server URL that may carry a password: masked when printed."""
    return field(default=default, metadata={"redact": redact_url})


def _secret(default: str = "") -> Any:
    """A secret: printed as `***`."""
    return field(default=default, metadata={"redact": redact_secret})


class _Section:
    """The printed form of a settings section: every field, secrets masked."""

    __slots__ = ()

    def __repr__(self) -> str:
        shown = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            redact = f.metadata.get("redact")
            # `!r` applies to the whole conditional: a masked value is quoted like any other string.
            shown.append(f"{f.name}={redact(value) if redact is not None else value!r}")
        return f"{type(self).__name__}({', '.join(shown)})"

    __str__ = __repr__


@dataclass(frozen=True, slots=True, repr=False)
class MqttSettings(_Section):
    """How to reach the broker. An empty URL means: the local stack starts its own."""

    url: str = _url()
    client_id: str = "fleetbridge-bridge-1"
    share_group: str = "fleetbridge"
    receive_maximum: int = _bounded(2000, low=1, high=65535, doc="messages in flight to the bridge")
    session_expiry_s: int = _bounded(7 * 24 * 3600, low=0, high=0xFFFFFFFF)
    keepalive_s: int = _bounded(30, low=5, high=3600)


@dataclass(frozen=True, slots=True, repr=False)
class RedisSettings(_Section):
    """How to reach Redis. An empty URL means: the local stack starts its own."""

    url: str = _url()


@dataclass(frozen=True, slots=True, repr=False)
class DatabaseSettings(_Section):
    """How to reach PostgreSQL, and how long history is kept."""

    url: str = _url()
    retention_days: int = _bounded(30, low=1, high=36500)
    partitions_ahead_days: int = _bounded(7, low=1, high=365)


@dataclass(frozen=True, slots=True, repr=False)
class BridgeSettings(_Section):
    """Batching, limits and timing of the bridge."""

    batch_max_messages: int = _bounded(2000, low=1, high=1_000_000)
    # 20 ms: live updates reach WebSocket clients about 25 ms (p50) after publishing instead of 180 ms
    # (bench/api.py); under load batches fill by count long before their age, so throughput is the same.
    batch_max_age_ms: int = _bounded(20, low=1, high=600_000)
    max_held_messages: int = _bounded(
        5000, low=1, high=10_000_000, doc="received, uncommitted messages held before reading from the broker pauses"
    )
    max_payload_bytes: int = _bounded(256 * 1024, low=64, high=256 * 1024 * 1024)
    max_samples_per_message: int = _bounded(1000, low=1, high=100_000)
    future_skew_s: int = _bounded(300, low=0, high=86400 * 365)
    stats_interval_ms: int = _bounded(500, low=50, high=600_000)
    presence_timeout_s: int = _bounded(90, low=2, high=86400, doc="silence after which a device is offline")
    retry_max_s: float = _bounded(5.0, low=0.01, high=3600)
    write_timeout_s: float = _bounded(
        60.0, low=0.1, high=3600, doc="a batch not committed in this long: its connection is dropped, the batch retried"
    )


@dataclass(frozen=True, slots=True, repr=False)
class EngineSettings(_Section):
    """The rules engine (`python -m engine`)."""

    instance: str = ""  # this instance's name among engine instances; empty: engine-<host>-<pid>
    poll_interval_ms: int = _bounded(250, low=10, high=60_000, doc="how often an idle engine looks for new feed rows")


@dataclass(frozen=True, slots=True, repr=False)
class NotifySettings(_Section):
    """How the engine delivers notifications of alert changes (webhooks, email)."""

    # smtp://user:password@host:587 (STARTTLS when the server offers it) or smtps://…:465 (TLS at once).
    # Empty: email notifications fail, and say so, until it is set.
    smtp_url: str = _url()
    smtp_from: str = "fleetbridge@localhost"
    max_attempts: int = _bounded(8, low=1, high=100, doc="attempts before a notification is dead-lettered")
    retry_base_s: float = _bounded(
        5.0, low=0.01, high=3600, doc="wait before the first retry; doubled after each failure"
    )
    retry_max_s: float = _bounded(3600.0, low=0.01, high=86400, doc="the longest wait between two attempts")
    timeout_s: float = _bounded(10.0, low=0.1, high=300, doc="how long one delivery attempt may take")


@dataclass(frozen=True, slots=True, repr=False)
class CommandSettings(_Section):
    """Commands to devices (docs/commands.md): expiry bounds and how the API hands them to the broker."""

    default_expiry_s: int = _bounded(300, low=1, high=30 * 86400, doc="expiry of a command that names none")
    max_expiry_s: int = _bounded(7 * 86400, low=1, high=30 * 86400, doc="the furthest expiry a command may ask for")
    result_grace_s: int = _bounded(
        300, low=1, high=30 * 86400, doc="after its expiry, how long a received command may take to report a result"
    )
    dispatch_interval_s: float = _bounded(
        0.5, low=0.01, high=60, doc="how often each API instance looks for commands to send or to expire"
    )
    publish_timeout_s: float = _bounded(5.0, low=0.1, high=60, doc="how long a publish may wait for the broker")


@dataclass(frozen=True, slots=True, repr=False)
class ApiSettings(_Section):
    """Where the API listens."""

    host: str = "127.0.0.1"
    port: int = _bounded(8000, low=0, high=65535)
    # Empty: a random secret per process (tokens then survive neither a restart nor another instance).
    jwt_secret: str = _secret()
    token_ttl_s: int = _bounded(900, low=30, high=86400)
    session_max_s: int = _bounded(
        43200, low=60, high=30 * 86400, doc="how long tokens may be renewed after the password was given"
    )
    login_attempts_per_minute: int = _bounded(10, low=1, high=10_000)
    # The API's own broker account (role `api`); empty: HTTP ingest answers 503.
    mqtt_url: str = _url()

    live_heartbeat_s: float = _bounded(15.0, low=0.05, high=3600, doc="silence after which the live WebSocket says so")
    live_group_refresh_s: float = _bounded(10.0, low=0.05, high=3600, doc="how often device groups are reloaded")
    export_pool_size: int = _bounded(
        4, low=1, high=100, doc="database connections of each API instance's own for track exports"
    )
    export_wait_s: float = _bounded(
        2.0, low=0.01, high=60, doc="how long an export waits for an export connection before answering 503"
    )
    live_auth_check_s: float = _bounded(
        5.0, low=0.05, high=300, doc="how often open live connections' credentials are checked again"
    )
    # The API's address as devices reach it, for the download links of firmware updates, e.g.
    # https://fleet.example.com. Empty: the address the operator's request came to.
    public_url: str = ""
    # A tile server for the operator map when online, e.g. https://tile.example/{z}/{x}/{y}.png; its origin
    # is added to the page's Content-Security-Policy (img-src). Empty: the offline background only.
    map_tile_url: str = ""


@dataclass(frozen=True, slots=True, repr=False)
class IngestSettings(_Section):
    """HTTP ingest (`POST /api/v1/ingest`): request bounds, waiting for the bridge, rate limits."""

    max_body_bytes: int = _bounded(1_000_000, low=64, high=256 * 1024 * 1024)
    max_messages: int = _bounded(1000, low=1, high=100_000, doc="messages (NDJSON lines) per request")
    reply_timeout_s: float = _bounded(10.0, low=0.1, high=300, doc="how long a request waits for the bridge")
    messages_per_minute: int = _bounded(1200, low=1, high=10_000_000, doc="per device")
    auth_failures_per_minute: int = _bounded(10, low=1, high=10_000, doc="per client address")
    credential_cache_s: float = _bounded(10.0, low=0, high=3600, doc="how long a verified secret is trusted")


@dataclass(frozen=True, slots=True, repr=False)
class StackSettings(_Section):
    """The local stack: where its servers keep their data and which ports they take (0: any free)."""

    state_dir: Path = Path(".fleet")
    mqtt_port: int = _bounded(1883, low=0, high=65535)
    redis_port: int = _bounded(6379, low=0, high=65535)
    postgres_port: int = _bounded(5432, low=0, high=65535)


@dataclass(frozen=True, slots=True, repr=False)
class SimSettings(_Section):
    """The simulated fleet of the local stack."""

    devices: int = _bounded(20, low=0, high=100_000)
    rate_hz: float = _bounded(1.0, low=0.001, high=1000)
    seed: int = 7


@dataclass(frozen=True, slots=True, repr=False)
class Settings(_Section):
    """Everything fleetbridge reads from its environment."""

    mqtt: MqttSettings = MqttSettings()
    redis: RedisSettings = RedisSettings()
    database: DatabaseSettings = DatabaseSettings()
    bridge: BridgeSettings = BridgeSettings()
    engine: EngineSettings = EngineSettings()
    notify: NotifySettings = NotifySettings()
    commands: CommandSettings = CommandSettings()
    api: ApiSettings = ApiSettings()
    ingest: IngestSettings = IngestSettings()
    stack: StackSettings = StackSettings()
    sim: SimSettings = SimSettings()


T = TypeVar("T")


def load_settings(env: Mapping[str, str], config_file: Path | None = None) -> Settings:
    """Build `Settings` from `env` (usually `os.environ`) and the optional TOML file."""
    path = config_file or (Path(env[CONFIG_FILE_VAR]) if env.get(CONFIG_FILE_VAR) else None)
    file_values: dict[str, Any] = {}
    if path is not None:
        try:
            file_values = tomllib.loads(path.read_text())
        except FileNotFoundError:
            raise SettingsError(f"{CONFIG_FILE_VAR}: file {path} does not exist") from None
        except tomllib.TOMLDecodeError as exc:
            raise SettingsError(f"{CONFIG_FILE_VAR}: {path} is not valid TOML: {exc}") from exc
    _check_names(env)
    sections: dict[str, Any] = {}
    hints = typing.get_type_hints(Settings)
    known_sections = {f.name for f in dataclasses.fields(Settings)}
    for name in file_values:
        if name not in known_sections:
            raise SettingsError(f"{path}: unknown section [{name}]; known: {', '.join(sorted(known_sections))}")
    for section in dataclasses.fields(Settings):
        section_type = hints[section.name]
        table = file_values.get(section.name, {})
        if not isinstance(table, dict):
            raise SettingsError(f"{path}: [{section.name}] must be a table")
        sections[section.name] = _load_section(section_type, section.name, env, table, path)
    return Settings(**sections)


def variable_names() -> frozenset[str]:
    """Every `FLEETBRIDGE_<SECTION>_<FIELD>` variable a setting reads."""
    hints = typing.get_type_hints(Settings)
    return frozenset(
        _variable(section.name, f.name)
        for section in dataclasses.fields(Settings)
        for f in dataclasses.fields(hints[section.name])
    )


def _variable(section: str, name: str) -> str:
    return f"{ENV_PREFIX}{section.upper()}_{name.upper()}"


def _check_names(env: Mapping[str, str]) -> None:
    """Refuse `FLEETBRIDGE_*` variables that nothing reads, naming the closest valid one."""
    valid = variable_names() | OTHER_VARIABLES
    unknown = sorted(
        name
        for name in env
        if name.startswith(ENV_PREFIX) and name not in valid and not name.startswith(OTHER_PREFIXES)
    )
    if not unknown:
        return
    problems = []
    for name in unknown:
        close = difflib.get_close_matches(name, valid, n=1, cutoff=0.6)
        problems.append(f"{name}: no such setting" + (f"; did you mean {close[0]}?" if close else ""))
    raise SettingsError(
        "; ".join(problems) + " (docs/configuration.md lists every setting; unset the variable or correct its name)"
    )


def _load_section(cls: type[T], section: str, env: Mapping[str, str], table: dict[str, Any], path: Path | None) -> T:
    hints = typing.get_type_hints(cls)
    values: dict[str, Any] = {}
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key in table:
        if key not in known:
            raise SettingsError(f"{path}: [{section}] has unknown key {key!r}; known: {', '.join(sorted(known))}")
    for f in dataclasses.fields(cls):  # type: ignore[arg-type]
        var = _variable(section, f.name)
        if var in env:
            raw: Any = env[var]
            source = var
        elif f.name in table:
            raw = table[f.name]
            source = f"{path} [{section}] {f.name}"
        else:
            continue
        values[f.name] = _convert(raw, hints[f.name], f.metadata, source)
    return cls(**values)


def _convert(raw: Any, kind: Any, meta: Mapping[str, Any], source: str) -> Any:
    if isinstance(kind, types.UnionType):
        kind = next(k for k in typing.get_args(kind) if k is not type(None))
    try:
        if kind is bool:
            value: Any = _to_bool(raw)
        elif kind is int:
            value = int(raw) if not isinstance(raw, bool) else int("bool is not a number")
        elif kind is float:
            value = _finite(float(raw))
        elif kind is Path:
            value = Path(str(raw)).expanduser()
        else:
            value = str(raw)
    except (ValueError, OverflowError):
        expected = {bool: "true or false", int: "a whole number", float: "a finite number", Path: "a path"}.get(
            kind, "text"
        )
        raise SettingsError(f"{source}: expected {expected}, got {raw!r}") from None
    low, high = meta.get("low"), meta.get("high")
    if (low is not None and value < low) or (high is not None and value > high):
        raise SettingsError(f"{source}: expected a value from {low} to {high}, got {raw!r}")
    return value


def _finite(value: float) -> float:
    # NaN compares false with every bound, so the range check would let it through; infinities are no setting.
    if not math.isfinite(value):
        raise ValueError(value)
    return value


def _to_bool(raw: Any) -> bool:
    if isinstance(raw, bool):
        return raw
    text = str(raw).strip().lower()
    if text in {"1", "true", "yes", "on"}:
        return True
    if text in {"0", "false", "no", "off"}:
        return False
    raise ValueError(text)
