"""Private Mosquitto, Redis and PostgreSQL for one benchmark run, with the schema migrated."""

from __future__ import annotations

import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import psycopg

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from broker.process import start_mosquitto  # noqa: E402
from models.migrate import migrate  # noqa: E402
from models.partitions import maintain  # noqa: E402
from stack.postgres import start_postgres  # noqa: E402
from stack.process import ServerProcess  # noqa: E402
from stack.redis import start_redis  # noqa: E402


def start_servers(base: Path, started: list[ServerProcess]) -> tuple[ServerProcess, ServerProcess, ServerProcess]:
    """Start the three servers under `base`, appending each to `started` (the caller stops them)."""
    print(f"[{time.strftime('%H:%M:%S')}] starting Mosquitto, Redis and PostgreSQL under {base}", file=sys.stderr)
    mosquitto = start_mosquitto(base / "mosquitto")
    started.append(mosquitto)
    redis_server = start_redis(base / "redis")
    started.append(redis_server)
    postgres = start_postgres(base / "pg")
    started.append(postgres)
    with psycopg.connect(postgres.url, autocommit=True) as conn:
        migrate(conn)
        maintain(conn, now=datetime.now(UTC))
    return mosquitto, redis_server, postgres
