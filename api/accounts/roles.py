"""The roles of operator accounts, each allowed everything the roles below it are."""

from __future__ import annotations

from enum import StrEnum


class Role(StrEnum):
    """What an operator may do: `viewer` reads, `operator` also changes devices, `admin` also manages access."""

    VIEWER = "viewer"
    OPERATOR = "operator"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        """Position in the hierarchy: a role includes every role of lower rank."""
        return _RANKS[self]

    def includes(self, other: Role) -> bool:
        """True when this role may do whatever `other` may."""
        return self.rank >= other.rank


_RANKS = {Role.VIEWER: 0, Role.OPERATOR: 1, Role.ADMIN: 2}
