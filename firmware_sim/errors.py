"""The simulator's exceptions: one root, so callers can catch everything the package raises on purpose."""

from __future__ import annotations


class SimError(Exception):
    """Root of the errors `firmware_sim` raises deliberately."""


class BrokerUrlError(SimError, ValueError):
    """A broker URL that is not `mqtt://[user[:password]@]host[:port]` or its `mqtts://` form."""


class RecordingError(SimError, ValueError):
    """A recorded trip that cannot be read or does not follow the documented format."""


class StoreError(SimError):
    """A device's sample store cannot be opened or written (in use by another process, disk full, …)."""
