"""Infrastructure errors of the bridge; data errors are values (`decode.Rejection`), never raised."""


class BridgeError(Exception):
    """Root of the bridge's infrastructure errors."""


class SinkUnavailableError(BridgeError):
    """PostgreSQL could not be reached or failed for a reason unrelated to the batch's data."""


class CacheUnavailableError(BridgeError):
    """Redis could not be reached; state updates are skipped, acknowledgements are unaffected."""
