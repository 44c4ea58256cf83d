"""A field site's sensors as its gateway sees them: who they are, how fast they are read, and their windows.

A gateway (`firmware_sim.gateway`, docs/gateways.md) reads each sensor of its site at the sensor's native
rate and summarises every sensor over one-second windows (min, max, avg, count, standard deviation): a
100 Hz vibration sensor becomes one `Aggregate` a second instead of a hundred readings. Everything here is
pure: the values are a deterministic function of the sensor's seed and the time, and windows are plain
arithmetic, so the tests can check each number.

Sensor ids follow the site: `{site}-{kind}-{n}`, and the gateway itself is `{site}-gw`. The admin registers
them with `POST /api/v1/devices` (the sensors with `gateway`: the gateway's id).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Final

from models.telemetry import Aggregate

NATIVE_RATES_HZ: Final[dict[str, float]] = {
    "vibration": 100.0,
    "pressure": 10.0,
    "temperature": 1.0,
    "flow": 1.0,
    "level": 0.1,
}
# Where each kind's simulated value rests and how far it wanders, inside models.telemetry.KNOWN_METRICS.
_SHAPES: Final[dict[str, tuple[float, float]]] = {
    "vibration": (12.0, 6.0),  # mm/s
    "pressure": (120.0, 15.0),  # PSI
    "temperature": (45.0, 8.0),  # °C
    "flow": (800.0, 120.0),  # L/min
    "level": (60.0, 20.0),  # %
}
WINDOW_S: Final = 1.0


def gateway_id(site: str) -> str:
    """The device id of a site's gateway."""
    return f"{site}-gw"


@dataclass(frozen=True, slots=True)
class SiteSensor:
    """One sensor of a site: its device id, its kind (= its metric) and its native rate."""

    device_id: str
    kind: str
    rate_hz: float
    seed: int

    @property
    def period_s(self) -> float:
        """Seconds between two readings."""
        return 1.0 / self.rate_hz

    def value(self, t_s: float) -> float:
        """The reading at `t_s` seconds since the epoch: a slow wave, a faster one and a little noise, within
        the kind's physical range."""
        centre, spread = _SHAPES[self.kind]
        phase = (self.seed % 997) / 997 * 2 * math.pi
        # A fixed scramble of (seed, millisecond): noise that is the same in every run, cheaply.
        noise = ((self.seed * 2_654_435_761 + round(t_s * 1000) * 40_503) % 10_007) / 10_007 * 0.2 - 0.1
        wave = 0.6 * math.sin(2 * math.pi * t_s / 300 + phase) + 0.3 * math.sin(2 * math.pi * t_s / 7 + phase)
        return round(max(0.0, centre + spread * (wave + noise)), 6)


def site_sensors(site: str, per_kind: int = 1, *, seed: int = 0) -> list[SiteSensor]:
    """The sensors of `site`: `per_kind` of each kind of `NATIVE_RATES_HZ`, in a stable order."""
    return [
        SiteSensor(f"{site}-{kind}-{n}", kind, rate, seed=seed * 7919 + index * 101 + n)
        for index, (kind, rate) in enumerate(NATIVE_RATES_HZ.items())
        for n in range(1, per_kind + 1)
    ]


def reading_times(sensor: SiteSensor, start_s: float, end_s: float) -> list[float]:
    """The instants in [start_s, end_s) at which `sensor` is read: whole multiples of its period, so two
    gateways (or two runs) read the same sensor at the same instants."""
    period = sensor.period_s
    first = math.ceil(round(start_s / period, 9))
    last = math.ceil(round(end_s / period, 9))
    return [n * period for n in range(first, last)]


@dataclass(slots=True)
class Window:
    """The readings of one sensor within one window, summarised as they come (no list of readings is kept).

    Welford's running mean and sum of squared deviations: a sum of squares minus the squared mean loses
    the small spread of large values (a pressure of 120 PSI ± 0.01) to rounding.
    """

    start_s: float
    end_s: float
    count: int = 0
    low: float = math.inf
    high: float = -math.inf
    mean: float = 0.0
    squares: float = 0.0  # sum of squared deviations from the running mean

    def add(self, value: float) -> None:
        """One more reading."""
        self.count += 1
        self.low = min(self.low, value)
        self.high = max(self.high, value)
        delta = value - self.mean
        self.mean += delta / self.count
        self.squares += delta * (value - self.mean)

    def summary(self) -> Aggregate:
        """min, max, avg, count and the (population) standard deviation of the readings."""
        if not self.count:
            raise ValueError("an empty window has no summary")
        # The mean can land a rounding error outside [min, max]; the bridge refuses such an aggregate.
        avg = min(max(self.mean, self.low), self.high)
        std = math.sqrt(max(0.0, self.squares) / self.count)
        return Aggregate(min=self.low, max=self.high, avg=avg, count=self.count, std=std)


def open_window(t_s: float, window_s: float, after_s: float = -math.inf) -> Window:
    """The window of length `window_s` that holds instant `t_s`, starting no earlier than `after_s` (the end of
    the sensor's previous window): after a change of length the first window is cut short, so that a
    sensor's windows never overlap and never share a start (its samples' `ts`)."""
    start = window_start(t_s, window_s)
    return Window(max(start, after_s), start + window_s)


def window_start(t_s: float, window_s: float = WINDOW_S) -> float:
    """The start of the window that holds instant `t_s`."""
    return math.floor(round(t_s / window_s, 9)) * window_s


def window_ts(start_s: float) -> datetime:
    """A window's device time: its start, as UTC."""
    return _EPOCH + timedelta(seconds=start_s)


_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
