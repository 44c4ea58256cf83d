"""A device's health score, 0–100, and the parts that explain it (docs/health.md).

Pure: the inputs are read elsewhere (api/device_health/). Each part takes points off 100, up to its own
cap, so one kind of trouble cannot hide the others and the score says which weighs most:

| part | points off | cap |
|---|---|---|
| open alerts | 25 a critical, 10 a major, 4 a minor, 1 a warning | 50 / 30 / 12 / 5 |
| presence | the share of the last `PRESENCE_DAYS` days offline, times 20 | 20 |
| engine temperature trend | 10 per °C a day the daily average rose (over `TREND_DAYS`), past 0.5 °C a day | 20 |
| vibration trend | half the percent the daily average rose, past 20 % | 15 |
| overdue maintenance | 15 a service due (an open maintenance alert) | 30 |
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

import msgspec

PRESENCE_DAYS: Final = 7
TREND_DAYS: Final = 14
MIN_TREND_DAYS: Final = 4  # fewer days of data say nothing about a trend
ALERT_POINTS: Final = {"critical": (25.0, 50.0), "major": (10.0, 30.0), "minor": (4.0, 12.0), "warning": (1.0, 5.0)}
PRESENCE_CAP: Final = 20.0
ENGINE_TEMP_SLOPE_FREE: Final = 0.5  # °C a day of rise that costs nothing (seasons, loads)
ENGINE_TEMP_CAP: Final = 20.0
VIBRATION_RISE_FREE_PCT: Final = 20.0
VIBRATION_CAP: Final = 15.0
MAINTENANCE_POINTS: Final = 15.0
MAINTENANCE_CAP: Final = 30.0


class HealthPart(msgspec.Struct, frozen=True, kw_only=True):
    """One reason the score is below 100: its name, the points it takes off, and why."""

    name: str
    points: float
    detail: str


class Health(msgspec.Struct, frozen=True, kw_only=True):
    """A score out of 100 and its parts (largest first); parts that take nothing off are listed too."""

    score: float
    parts: list[HealthPart]


class HealthInputs(msgspec.Struct, frozen=True, kw_only=True):
    """What the score is computed from."""

    open_alerts: dict[str, int]  # severity -> count (maintenance alerts apart)
    online_share: float | None  # of the last PRESENCE_DAYS days; None: presence unknown
    engine_temp_daily: Sequence[float] = ()  # daily averages, oldest first
    vibration_daily: Sequence[float] = ()
    services_due: int = 0  # open maintenance alerts


def slope_per_day(values: Sequence[float]) -> float | None:
    """The least-squares slope of daily values (per day), or None with fewer than MIN_TREND_DAYS."""
    n = len(values)
    if n < MIN_TREND_DAYS:
        return None
    mean_x = (n - 1) / 2
    mean_y = sum(values) / n
    num = sum((x - mean_x) * (y - mean_y) for x, y in enumerate(values))
    den = sum((x - mean_x) ** 2 for x in range(n))
    return num / den


def score(inputs: HealthInputs) -> Health:
    """The score and its parts."""
    parts: list[HealthPart] = []
    for severity, (each, cap) in ALERT_POINTS.items():
        count = inputs.open_alerts.get(severity, 0)
        points = min(cap, each * count)
        parts.append(HealthPart(name=f"open {severity} alerts", points=points, detail=f"{count} open"))
    if inputs.online_share is None:
        parts.append(HealthPart(name="presence", points=0.0, detail="no presence recorded yet"))
    else:
        share = min(1.0, max(0.0, inputs.online_share))
        points = round((1.0 - share) * PRESENCE_CAP, 1)
        parts.append(
            HealthPart(name="presence", points=points, detail=f"online {share:.0%} of the last {PRESENCE_DAYS} days")
        )
    slope = slope_per_day(inputs.engine_temp_daily)
    if slope is None:
        parts.append(HealthPart(name="engine temperature trend", points=0.0, detail="not enough days of data"))
    else:
        points = round(min(ENGINE_TEMP_CAP, max(0.0, slope - ENGINE_TEMP_SLOPE_FREE) * 10), 1)
        parts.append(
            HealthPart(
                name="engine temperature trend",
                points=points,
                detail=f"daily average {slope:+.2f} °C a day over {len(inputs.engine_temp_daily)} days",
            )
        )
    rise = _rise_pct(inputs.vibration_daily)
    if rise is None:
        parts.append(HealthPart(name="vibration trend", points=0.0, detail="not enough days of data"))
    else:
        points = round(min(VIBRATION_CAP, max(0.0, rise - VIBRATION_RISE_FREE_PCT) / 2), 1)
        parts.append(
            HealthPart(
                name="vibration trend",
                points=points,
                detail=f"daily average {rise:+.0f} % over {len(inputs.vibration_daily)} days",
            )
        )
    parts.append(
        HealthPart(
            name="overdue maintenance",
            points=min(MAINTENANCE_CAP, MAINTENANCE_POINTS * inputs.services_due),
            detail=f"{inputs.services_due} service{'s' if inputs.services_due != 1 else ''} due",
        )
    )
    parts.sort(key=lambda p: -p.points)
    return Health(score=round(max(0.0, 100.0 - sum(p.points for p in parts)), 1), parts=parts)


def _rise_pct(values: Sequence[float]) -> float | None:
    """How much the trend line rose across the days, in percent of where it started."""
    slope = slope_per_day(values)
    if slope is None:
        return None
    n = len(values)
    start = sum(values) / n - slope * (n - 1) / 2
    if start <= 0:
        return None
    return 100.0 * slope * (n - 1) / start
