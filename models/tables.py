"""SQLModel mappings of the tables the migrations create, for code that prefers an ORM view.

The SQL in `models/migrations/` is the source of truth (partitioning and TimescaleDB cannot be
expressed here); a test keeps these classes and the migrated schema from drifting apart.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import Column, LargeBinary, SmallInteger
from sqlalchemy.dialects.postgresql import JSONB, REAL
from sqlmodel import Field, SQLModel


class Device(SQLModel, table=True):
    """A device in the registry; the bridge keeps `last_seen` current."""

    __tablename__ = "devices"

    id: str = Field(primary_key=True, max_length=64)
    kind: str = "truck"
    name: str | None = None
    group_name: str | None = None
    metadata_: dict[str, Any] = Field(default_factory=dict, sa_column=Column("metadata", JSONB, nullable=False))
    created_at: datetime
    last_seen: datetime | None = None
    disabled: bool = False
    presence: str | None = None
    presence_source: str | None = None
    presence_since: datetime | None = None
    firmware_version: str | None = None  # as the device last reported running it (docs/ota.md)
    firmware_reported_at: datetime | None = None
    gateway_id: str | None = None  # the gateway that publishes for this device (docs/gateways.md)
    site: str | None = None  # the field site a gateway serves


class PresenceChange(SQLModel, table=True):
    """A change of a device's presence, recorded by a trigger on `devices.presence` (migration 0017)."""

    __tablename__ = "presence_history"

    id: int | None = Field(default=None, primary_key=True)
    device_id: str
    at: datetime
    presence: str
    source: str | None = None


class DeviceGroup(SQLModel, table=True):
    """A described device group; membership is `Device.group_name`, which may name undescribed groups too."""

    __tablename__ = "device_groups"

    name: str = Field(primary_key=True, max_length=128)
    description: str | None = None
    created_at: datetime
    updated_at: datetime


class RejectedMessage(SQLModel, table=True):
    """A refused message or sample, kept for inspection."""

    __tablename__ = "rejected_messages"

    id: int | None = Field(default=None, primary_key=True)
    received_at: datetime
    topic: str
    device_id: str | None = None
    reason: str
    sample_index: int = -1
    seq: int | None = None
    boot: int | None = None
    payload_sha256: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    payload: bytes = Field(sa_column=Column(LargeBinary, nullable=False))
    payload_size: int


class Telemetry(SQLModel, table=True):
    """One sample of one device; (device_id, boot, seq) is its identity, keyed with ts (models.telemetry.SAMPLE_KEY)."""

    __tablename__ = "telemetry"

    device_id: str = Field(primary_key=True)
    ts: datetime = Field(primary_key=True)
    boot: int = Field(default=0, primary_key=True)
    seq: int = Field(primary_key=True)
    received_at: datetime
    lat: float | None = None
    lon: float | None = None
    odometer: float | None = None
    alt: float | None = Field(default=None, sa_column=Column(REAL))
    speed: float | None = Field(default=None, sa_column=Column(REAL))
    heading: float | None = Field(default=None, sa_column=Column(REAL))
    accuracy: float | None = Field(default=None, sa_column=Column(REAL))
    fuel: float | None = Field(default=None, sa_column=Column(REAL))
    engine_temp: float | None = Field(default=None, sa_column=Column(REAL))
    temperature: float | None = Field(default=None, sa_column=Column(REAL))
    pressure: float | None = Field(default=None, sa_column=Column(REAL))
    vibration: float | None = Field(default=None, sa_column=Column(REAL))
    flow: float | None = Field(default=None, sa_column=Column(REAL))
    level: float | None = Field(default=None, sa_column=Column(REAL))
    battery: float | None = Field(default=None, sa_column=Column(REAL))
    quality: int | None = Field(default=None, sa_column=Column(SmallInteger))
    extra: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))
    agg: dict[str, Any] | None = Field(default=None, sa_column=Column(JSONB))


def _real() -> Any:
    # sa_type, not sa_column: a Column object can belong to one table only, and two tables share these.
    return Field(default=None, sa_type=REAL)


class _RollupColumns(SQLModel):
    """The columns of a time-bucket rollup (models/rollups.py): per metric count, sum, min, max; last fix."""

    device_id: str = Field(primary_key=True)
    ts: datetime = Field(primary_key=True)  # the bucket's start
    samples: int
    fuel_n: int = 0
    fuel_sum: float = 0.0
    fuel_min: float | None = _real()
    fuel_max: float | None = _real()
    engine_temp_n: int = 0
    engine_temp_sum: float = 0.0
    engine_temp_min: float | None = _real()
    engine_temp_max: float | None = _real()
    odometer_n: int = 0
    odometer_sum: float = 0.0
    odometer_min: float | None = None
    odometer_max: float | None = None
    temperature_n: int = 0
    temperature_sum: float = 0.0
    temperature_min: float | None = _real()
    temperature_max: float | None = _real()
    pressure_n: int = 0
    pressure_sum: float = 0.0
    pressure_min: float | None = _real()
    pressure_max: float | None = _real()
    vibration_n: int = 0
    vibration_sum: float = 0.0
    vibration_min: float | None = _real()
    vibration_max: float | None = _real()
    flow_n: int = 0
    flow_sum: float = 0.0
    flow_min: float | None = _real()
    flow_max: float | None = _real()
    level_n: int = 0
    level_sum: float = 0.0
    level_min: float | None = _real()
    level_max: float | None = _real()
    battery_n: int = 0
    battery_sum: float = 0.0
    battery_min: float | None = _real()
    battery_max: float | None = _real()
    pos_n: int = 0
    pos_ts: datetime | None = None
    pos_seq: int | None = None
    pos_boot: int | None = None  # plain tables only (step 0011): orders fixes of one instant
    lat: float | None = None
    lon: float | None = None


class TelemetryMinute(_RollupColumns, table=True):
    """One device's telemetry summarised over one minute."""

    __tablename__ = "telemetry_1m"


class TelemetryHour(_RollupColumns, table=True):
    """One device's telemetry summarised over one hour."""

    __tablename__ = "telemetry_1h"
