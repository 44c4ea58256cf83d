"""`POST /api/v1/ingest`: telemetry over HTTP, for devices that cannot speak MQTT.

The order of the checks is the order of their cost to us: the credentials (HTTP Basic, the device's own
MQTT secret; failures limited per client address), then the body (bounded as it is read), then the
device's message rate, and only then the broker and the bridge. The answer lists every message; its
status says how far the whole request got:

* 200: every message answered by the bridge, and something stored (or nothing to store);
* 422: every message answered, and every one refused (they are dead-lettered, like over MQTT);
* 503 / 504 with `Retry-After`: the broker or the bridge did not answer for some message in time; the
  problem lists what was confirmed, and sending the whole request again is safe.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Final

import msgspec
from litestar import Request, Response, post
from litestar.di import NamedDependency
from litestar.openapi import ResponseSpec
from litestar.openapi.spec import OpenAPIMediaType, OpenAPIType, Operation, RequestBody, Schema
from litestar.plugins.problem_details import ProblemDetailsException
from litestar.status_codes import (
    HTTP_200_OK,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_503_SERVICE_UNAVAILABLE,
    HTTP_504_GATEWAY_TIMEOUT,
)
from redis.asyncio import Redis

from api.auth import DEVICE, DEVICE_SCHEME
from api.ingest.backend import IngestBackend
from api.ingest.body import ACCEPTED_TYPES, BodyRefusal, read_limited, split_messages
from api.ingest.credentials import Verdict, parse_basic
from api.ingest.schemas import IngestReport
from api.pool import Pool
from api.problems import (
    forbidden,
    gateway_timeout,
    payload_too_large,
    too_many_requests,
    unauthorized,
    unavailable,
    unprocessable,
    unsupported_media_type,
)
from models.telemetry import utcnow

BASIC_CHALLENGE: Final = 'Basic realm="fleetbridge ingest", charset="UTF-8"'
RETRY_AFTER_S: Final = 5
RETRY_IS_SAFE: Final = "sending the same request again is safe: what is already stored is stored once"
# Not a setting: an instance without a broker URL stays that way until it is restarted.
NOT_CONFIGURED_RETRY_AFTER_S: Final = 60


@dataclass
class IngestOperation(Operation):
    """The body is read by the handler itself (bounded, by content type): documented by hand."""

    def __post_init__(self) -> None:
        schema = Schema(type=OpenAPIType.STRING, format="binary")  # type: ignore[arg-type]
        self.request_body = RequestBody(
            required=True,
            description="One telemetry message (JSON or MessagePack, as on fleet/v1/{id}/telemetry), "
            "or NDJSON: one JSON message a line.",
            content={media: OpenAPIMediaType(schema=schema) for media in ACCEPTED_TYPES},
        )


@post(
    "/ingest",
    opt=DEVICE,
    security=[{DEVICE_SCHEME: []}],
    tags=["ingest"],
    summary="Send telemetry over HTTP",
    status_code=HTTP_200_OK,
    # Read and bounded by the handler, with a problem that names the setting.
    request_max_body_size=None,
    operation_class=IngestOperation,
    responses={
        HTTP_401_UNAUTHORIZED: ResponseSpec(None, description="no valid device credentials"),
        HTTP_403_FORBIDDEN: ResponseSpec(None, description="the device is disabled"),
        HTTP_413_REQUEST_ENTITY_TOO_LARGE: ResponseSpec(None, description="too many bytes or messages"),
        HTTP_422_UNPROCESSABLE_ENTITY: ResponseSpec(None, description="every message refused (the reasons listed)"),
        HTTP_429_TOO_MANY_REQUESTS: ResponseSpec(None, description="over the device's rate, or too many failures"),
        HTTP_503_SERVICE_UNAVAILABLE: ResponseSpec(None, description="the broker is unreachable; retry"),
        HTTP_504_GATEWAY_TIMEOUT: ResponseSpec(None, description="not every message confirmed in time; retry"),
    },
)
async def ingest(
    request: Request[Any, Any, Any],
    pool: NamedDependency[Pool],
    redis: NamedDependency[Redis],
    ingest_backend: NamedDependency[IngestBackend],
) -> Response[IngestReport]:
    """Store telemetry sent by a device with its own credentials, exactly as if it had come over MQTT.

    The body is one message (`application/json`, or MessagePack) or NDJSON (`application/x-ndjson`).
    The answer comes once the bridge has committed or refused every message: per message, the (boot,
    seq) ranges stored and the refusals with their reasons.
    """
    backend = ingest_backend
    device_id = await _authenticate(request, pool, redis, backend)
    forwarder = backend.forwarder
    if forwarder is None:
        raise unavailable("HTTP ingest is off: FLEETBRIDGE_API_MQTT_URL is not set", NOT_CONFIGURED_RETRY_AFTER_S)
    body = await read_limited(request.stream(), backend.max_body_bytes)
    messages = (
        body
        if isinstance(body, BodyRefusal)
        else split_messages(body, request.headers.get("Content-Type"), max_messages=backend.max_messages)
    )
    if isinstance(messages, BodyRefusal):
        raise _refused_body(messages)
    rate = backend.limits.messages_per_minute
    if len(messages) > rate:
        raise payload_too_large(f"{len(messages)} messages in one request exceed the device's limit of {rate} a minute")
    throttled = await backend.limits.take_messages(redis, device_id, len(messages))
    if throttled is not None:
        raise too_many_requests(f"more than {rate} messages a minute from {device_id}", throttled.retry_after_s)
    forwarded = await forwarder.forward(device_id, messages, now=utcnow())
    report = forwarded.report
    extra: dict[str, Any] = msgspec.to_builtins(report)
    if forwarded.failure == "unavailable":
        raise unavailable(f"{forwarded.detail}; {RETRY_IS_SAFE}", RETRY_AFTER_S, extra)
    if forwarded.failure == "timeout":
        raise gateway_timeout(f"{forwarded.detail}; {RETRY_IS_SAFE}", RETRY_AFTER_S, extra)
    if report.rejected and not report.stored_samples:
        raise unprocessable("every message was refused; the reasons are listed per message", extra)
    return Response(report)


async def _authenticate(request: Request[Any, Any, Any], pool: Pool, redis: Redis, backend: IngestBackend) -> str:
    """The id of the device whose valid credentials the request carries; else a 401, 403 or 429 problem."""
    credentials = parse_basic(request.headers.get("Authorization"))
    if credentials is None:
        raise unauthorized("device credentials required: HTTP Basic with the device id and its secret", BASIC_CHALLENGE)
    now = time.monotonic()
    if backend.credentials.remembered(credentials, now):
        return credentials.username
    address = request.client.host if request.client is not None else "unknown"
    throttled = await backend.limits.reserve_auth(redis, address)
    if throttled is not None:
        raise too_many_requests("too many failed authentications from this address", throttled.retry_after_s)
    async with pool.connection() as conn:
        verdict = await backend.credentials.check(conn, credentials, now)
    if verdict is Verdict.INVALID:
        raise unauthorized("invalid device credentials", BASIC_CHALLENGE)
    await backend.limits.release_auth(redis, address)
    if verdict is Verdict.DISABLED:
        raise forbidden(f"device {credentials.username} is disabled")
    return credentials.username


def _refused_body(refusal: BodyRefusal) -> ProblemDetailsException:
    if refusal.kind == "unsupported_type":
        return unsupported_media_type(refusal.detail)
    if refusal.kind == "empty":
        return unprocessable(refusal.detail)
    return payload_too_large(refusal.detail)
