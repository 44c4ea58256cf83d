"""Private Mosquitto, Redis and PostgreSQL for one run (a benchmark, a fault scenario), schema migrated.

The benchmarks and the fault suite kill, stop and flood their servers, so each run starts its own under a
folder of its own rather than sharing the tests' session servers or the local stack's.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from pathlib import Path

import psycopg

from broker.process import start_mosquitto
from models.migrate import migrate
from models.partitions import maintain
from stack.postgres import start_postgres
from stack.process import ServerProcess
from stack.redis import start_redis

log = logging.getLogger(__name__)


def start_servers(base: Path, started: list[ServerProcess]) -> tuple[ServerProcess, ServerProcess, ServerProcess]:
    """Start Mosquitto, Redis and PostgreSQL under `base`, appending each to `started` (the caller stops them).

    Appended one by one, so that on a failure half-way the caller still stops those already running.
    PostgreSQL keeps fsync on: what the runs measure includes the cost of durability.
    """
    log.info("starting Mosquitto, Redis and PostgreSQL under %s", base)
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
