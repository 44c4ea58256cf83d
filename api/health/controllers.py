"""`/healthz` (the process is alive) and `/readyz` (its backends answer)."""

from __future__ import annotations

from litestar import Response, get
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.status_codes import HTTP_200_OK, HTTP_503_SERVICE_UNAVAILABLE
from redis.asyncio import Redis

from api.auth import NO_CREDENTIALS, PUBLIC
from api.health.schemas import Liveness, Readiness
from api.health.services import readiness
from api.ingest.backend import IngestBackend
from api.pool import Pool


@get("/healthz", tags=["health"], opt=PUBLIC, security=NO_CREDENTIALS, summary="Liveness")
async def healthz() -> Liveness:
    """Answers while the process runs; touches no backend."""
    return Liveness()


@get(
    "/readyz",
    tags=["health"],
    opt=PUBLIC,
    security=NO_CREDENTIALS,
    summary="Readiness",
    responses={HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(Readiness, description="a backend did not answer")},
)
async def readyz(
    redis: NamedDependency[Redis], pool: NamedDependency[Pool], ingest_backend: NamedDependency[IngestBackend]
) -> Response[Readiness]:
    """200 when Redis and PostgreSQL both answer, else 503 naming the one that did not; also reports the
    MQTT link of HTTP ingest, if configured, without making readiness depend on it."""
    result = await readiness(redis, pool, ingest_backend.link)
    return Response(result, status_code=HTTP_200_OK if result.status == "ready" else HTTP_503_SERVICE_UNAVAILABLE)
