"""The type of the API's PostgreSQL connection pools, apart from the app state that holds them.

Services and the live layer name the type without importing the lifespan's wiring (`api.backends`), which
itself imports the live hub and the credential watch.
"""

from __future__ import annotations

from typing import Any, TypeAlias

from psycopg import AsyncConnection
from psycopg_pool import AsyncConnectionPool

Pool: TypeAlias = AsyncConnectionPool[AsyncConnection[tuple[Any, ...]]]
