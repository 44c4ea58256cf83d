"""What a simulated device does with its twin: apply a newer desired document, and say what it applied.

Pure (no MQTT): `Device` hands it each message of `fleet/v1/{id}/config` and publishes the report it
returns, retained, on `config/reported`. The device applies the report interval (the fleet's scheduler
reads `report_interval_s`), the thresholds of metrics it knows (`models.telemetry.KNOWN_METRICS`), the
firmware channel and any other key as given; it reports exactly that, so thresholds of metrics it does not
know show up as a difference in the API's view. A version not higher than the applied one is ignored:
versions only grow (models/twin.py), so an older document can only be a late duplicate.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import msgspec

from models.telemetry import KNOWN_METRICS
from models.twin import DesiredConfig, KnownSettings, ReportedConfig


@dataclass(slots=True)
class TwinState:
    """The configuration a device applied, and every version it was sent (for tests and logs)."""

    version: int = 0
    report_interval_s: int | None = None
    thresholds: dict[str, float] = field(default_factory=dict)
    applied: dict[str, Any] = field(default_factory=dict)
    received: list[int] = field(default_factory=list)
    refused: int = 0

    def apply(self, config: DesiredConfig) -> ReportedConfig | str | None:
        """Apply `config` if newer: the report to publish; the reason if it cannot be applied; None if old."""
        self.received.append(config.version)
        if config.version <= self.version:
            return None
        try:
            known = msgspec.convert(config.desired, KnownSettings)
        except msgspec.ValidationError as exc:
            self.refused += 1
            return f"version {config.version} not applied: {exc}"
        thresholds = {name: value for name, value in (known.thresholds or {}).items() if name in KNOWN_METRICS}
        applied = dict(config.desired)
        if known.thresholds is not None:
            applied["thresholds"] = thresholds
        self.version = config.version
        self.report_interval_s = known.report_interval_s
        self.thresholds = thresholds
        self.applied = applied
        return ReportedConfig(version=config.version, applied=applied)
