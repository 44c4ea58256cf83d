"""Who a request acts for, as the API's access checks and live connections see it."""

from __future__ import annotations

from dataclasses import dataclass

from api.accounts.roles import Role


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a request acts for: an operator account (from a token) or an integrator (from an API key)."""

    name: str
    role: Role
    api_key_id: int | None = None
    group: str | None = None
    """Integrators limited to one device group: `devices.group_name` of the only devices they may see."""
    expires_at: float | None = None
    """When the operator's token expires (UNIX time); None for API keys, which are revoked instead."""

    @property
    def is_api_key(self) -> bool:
        """True for integrators: read-only, whatever the route."""
        return self.api_key_id is not None
