"""Settings from the environment and a TOML file."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from config import Settings, SettingsError, load_settings
from config.settings import variable_names


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


@pytest.mark.parametrize("raw", ["nan", "NaN", "inf", "-inf", "1e999"])
def test_load_settings_refuses_nan_and_infinities_even_within_bounds(raw: str) -> None:
    with pytest.raises(SettingsError, match=r"FLEETBRIDGE_BRIDGE_RETRY_MAX_S: expected a finite number"):
        load_settings({"FLEETBRIDGE_BRIDGE_RETRY_MAX_S": raw})


def test_toml_nan_is_refused_with_its_place(tmp_path: Path) -> None:
    path = tmp_path / "fleet.toml"
    path.write_text("[sim]\nrate_hz = nan\n")
    with pytest.raises(SettingsError, match=r"\[sim\] rate_hz: expected a finite number"):
        load_settings({}, path)


def test_load_settings_refuses_a_misspelt_variable_naming_the_closest_one() -> None:
    with pytest.raises(
        SettingsError,
        match=r"FLEETBRIDGE_BRIDGE_BATCH_MAX_AGE: no such setting; did you mean FLEETBRIDGE_BRIDGE_BATCH_MAX_AGE_MS\?",
    ):
        load_settings({"FLEETBRIDGE_BRIDGE_BATCH_MAX_AGE": "50"})


def test_load_settings_refuses_an_unknown_variable_without_a_close_name() -> None:
    with pytest.raises(SettingsError, match="FLEETBRIDGE_XYZZY: no such setting"):
        load_settings({"FLEETBRIDGE_XYZZY": "1", "OTHER_PROGRAM_VARIABLE": "left alone"})


def vars_of(section: object) -> dict[str, object]:
    return {f.name: getattr(section, f.name) for f in dataclasses.fields(section)}  # type: ignore[arg-type]


def test_every_setting_and_the_variables_read_elsewhere_are_accepted() -> None:
    defaults = Settings()
    env = {
        f"FLEETBRIDGE_{section.upper()}_{name.upper()}": str(value)
        for section in (
            "mqtt",
            "redis",
            "database",
            "bridge",
            "engine",
            "notify",
            "commands",
            "api",
            "ingest",
            "stack",
            "sim",
        )
        for name, value in vars_of(getattr(defaults, section)).items()
        if value is not None
    }
    assert set(env) == variable_names()
    env |= {
        "FLEETBRIDGE_MQTT_URL": "1",
        "FLEETBRIDGE_CONFIG": "",
        "FLEETBRIDGE_TEST_MQTT_URL": "mqtt://h",
        "FLEETBRIDGE_TEST_REDIS_URL": "redis://h",
        "FLEETBRIDGE_TEST_DATABASE_URL": "postgresql://h",
        "FLEETBRIDGE_FAULTS_OUTAGE_S": "30",
    }
    assert "FLEETBRIDGE_MQTT_URL" in variable_names()
    assert load_settings(env).mqtt.url == "1"


def test_settings_repr_masks_passwords_and_secrets() -> None:
    settings = load_settings(
        {
            "FLEETBRIDGE_DATABASE_URL": "postgresql://fleet:db-pass@db:5432/fleet",
            "FLEETBRIDGE_REDIS_URL": "redis://:redis-pass@cache:6379/0",
            "FLEETBRIDGE_MQTT_URL": "mqtt://bridge:mqtt-pass@broker",
            "FLEETBRIDGE_API_MQTT_URL": "mqtts://api:api-pass@broker:8883",
            "FLEETBRIDGE_API_JWT_SECRET": "jwt-pass",
        }
    )
    for shown in (repr(settings), str(settings), repr(settings.api), f"{settings.database}"):
        for secret in ("db-pass", "redis-pass", "mqtt-pass", "api-pass", "jwt-pass"):
            assert secret not in shown
    assert "postgresql://fleet:***@db:5432/fleet" in repr(settings)
    assert "jwt_secret='***'" in repr(settings)
    assert settings.database.url == "postgresql://fleet:db-pass@db:5432/fleet"  # only the printed form changes
