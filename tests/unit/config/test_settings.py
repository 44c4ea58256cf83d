"""Settings from the environment and a TOML file."""

from __future__ import annotations

from pathlib import Path

import pytest

from config import SettingsError, load_settings


def test_load_settings_reads_prefixed_variables() -> None:
    settings = load_settings({"FLEETBRIDGE_MQTT_URL": "mqtt://h:1", "FLEETBRIDGE_BRIDGE_BATCH_MAX_AGE_MS": "50"})
    assert settings.mqtt.url == "mqtt://h:1"
    assert settings.bridge.batch_max_age_ms == 50


def test_load_settings_names_the_variable_in_errors() -> None:
    with pytest.raises(SettingsError, match="FLEETBRIDGE_MQTT_RECEIVE_MAXIMUM: expected a whole number"):
        load_settings({"FLEETBRIDGE_MQTT_RECEIVE_MAXIMUM": "many"})


def test_load_settings_refuses_values_out_of_range() -> None:
    with pytest.raises(SettingsError, match="from 1 to 65535"):
        load_settings({"FLEETBRIDGE_MQTT_RECEIVE_MAXIMUM": "70000"})


def test_environment_overrides_the_toml_file(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text('[redis]\nurl = "redis://file"\n[api]\nport = 9000\n')
    settings = load_settings({"FLEETBRIDGE_CONFIG": str(path), "FLEETBRIDGE_API_PORT": "9100"})
    assert settings.redis.url == "redis://file"
    assert settings.api.port == 9100


def test_toml_file_with_unknown_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text("[redis]\nuri = 1\n")
    with pytest.raises(SettingsError, match="unknown key 'uri'"):
        load_settings({}, path)


def test_toml_file_with_unknown_section_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text("[reddis]\nurl = 1\n")
    with pytest.raises(SettingsError, match=r"unknown section \[reddis\]"):
        load_settings({}, path)
