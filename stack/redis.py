"""Start a real redis-server on loopback for tests and the local stack.

Redis is a cache in fleetbridge (it can be rebuilt from PostgreSQL), so this server keeps nothing on
disk: no RDB snapshots and no append-only file, which also keeps a restart after SIGKILL instant.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Final

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from stack.process import LOOPBACK, LaunchSpec, ServerProcess, ServerStartError, claim_port

REDIS_FALLBACK_BINARY: Final = Path("/usr/bin/redis-server")
PROBE_TIMEOUT_S: Final = 1.0


def redis_binary(binary: Path | None = None) -> Path:
    """`binary`, else `redis-server` from PATH, else Debian's path; `ServerStartError` if none exists."""
    found = binary or (Path(which) if (which := shutil.which("redis-server")) else REDIS_FALLBACK_BINARY)
    if not found.exists():
        raise ServerStartError(f"redis-server not found at {found}: install the redis-server package")
    return found


def redis_answers(port: int) -> bool:
    """True when a Redis server on 127.0.0.1:`port` answers PING."""
    client = redis.Redis(
        host=LOOPBACK,
        port=port,
        socket_connect_timeout=PROBE_TIMEOUT_S,
        socket_timeout=PROBE_TIMEOUT_S,
        # One attempt: redis-py's default retries with backoff would stretch a refused probe to seconds.
        retry=Retry(NoBackoff(), retries=0),
    )
    try:
        return bool(client.ping())
    except redis.RedisError:
        # Refused while binding, or BUSY/LOADING while starting: not ready yet.
        return False
    finally:
        client.close()


def start_redis(data_dir: Path, port: int = 0, *, binary: Path | None = None) -> ServerProcess:
    """Start redis-server on 127.0.0.1:`port` (0: a free port) and return once it answers PING."""
    port = claim_port(port, "redis")
    data_dir.mkdir(parents=True, exist_ok=True)
    argv = (
        str(redis_binary(binary)),
        "--port",
        str(port),
        "--bind",
        LOOPBACK,
        # A cache: nothing is written to disk (see the module docstring).
        "--save",
        "",
        "--appendonly",
        "no",
        "--dir",
        str(data_dir),
        "--daemonize",
        "no",
        # An empty logfile means stdout, which the launcher sends to the log file.
        "--logfile",
        "",
    )
    return ServerProcess.start(
        "redis",
        url=f"redis://{LOOPBACK}:{port}/0",
        port=port,
        data_dir=data_dir,
        log_path=data_dir / "redis.log",
        spec=LaunchSpec(argv=argv, ready=lambda: redis_answers(port)),
    )
