"""Typed, frozen settings read once at the edge from `FLEETBRIDGE_*` variables and an optional TOML file."""

from config.settings import (
    ApiSettings,
    BridgeSettings,
    CommandSettings,
    DatabaseSettings,
    EngineSettings,
    IngestSettings,
    MqttSettings,
    NotifySettings,
    RedisSettings,
    Settings,
    SettingsError,
    SimSettings,
    StackSettings,
    load_settings,
)

__all__ = [
    "ApiSettings",
    "BridgeSettings",
    "CommandSettings",
    "DatabaseSettings",
    "EngineSettings",
    "IngestSettings",
    "MqttSettings",
    "NotifySettings",
    "RedisSettings",
    "Settings",
    "SettingsError",
    "SimSettings",
    "StackSettings",
    "load_settings",
]
