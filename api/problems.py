"""RFC 9457 problem responses (what went wrong, for whoever reads the response) and server-error logging.

A server-side failure (5xx) tells the caller only what kind of thing failed and a correlation id (in the
body as `correlation_id` and as the `X-Request-Id` header); what the driver said — host names, ports,
user names — goes to the log under that id, never to the caller, who may be anonymous (logging in).
"""

from __future__ import annotations

import logging
import re
import uuid
from typing import Any, Final, cast

import psycopg
from litestar.connection import Request
from litestar.exceptions import ClientException, HTTPException
from litestar.plugins.problem_details import ProblemDetailsConfig, ProblemDetailsException, ProblemDetailsPlugin
from litestar.response import Response
from litestar.status_codes import (
    HTTP_400_BAD_REQUEST,
    HTTP_401_UNAUTHORIZED,
    HTTP_403_FORBIDDEN,
    HTTP_404_NOT_FOUND,
    HTTP_409_CONFLICT,
    HTTP_412_PRECONDITION_FAILED,
    HTTP_413_REQUEST_ENTITY_TOO_LARGE,
    HTTP_415_UNSUPPORTED_MEDIA_TYPE,
    HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
    HTTP_422_UNPROCESSABLE_ENTITY,
    HTTP_428_PRECONDITION_REQUIRED,
    HTTP_429_TOO_MANY_REQUESTS,
    HTTP_500_INTERNAL_SERVER_ERROR,
    HTTP_503_SERVICE_UNAVAILABLE,
    HTTP_504_GATEWAY_TIMEOUT,
)
from litestar.types import Scope
from redis.exceptions import RedisError

log = logging.getLogger(__name__)

CORRELATION_HEADER: Final = "X-Request-Id"
CORRELATION_FIELD: Final = "correlation_id"
# Where the id of the request's failure is kept between the logging hook and the answer.
_SCOPE_KEY: Final = "fleetbridge.correlation_id"
# An id a proxy in front already gave the request is kept, if it is a plain token (it is logged verbatim).
_PASSED_ID: Final = re.compile(r"[A-Za-z0-9._-]{8,64}")
BACKEND_RETRY_AFTER_S: Final = 5


def correlation_id(scope: Scope) -> str:
    """The id that ties this request's failure in the log to its answer; made on first use.

    The request's own `X-Request-Id` when it has a plain one (a load balancer's), else a random one.
    """
    state = cast("dict[str, Any]", scope)
    known = state.get(_SCOPE_KEY)
    if isinstance(known, str):
        return known
    passed = next((value.decode("latin-1") for name, value in scope.get("headers", ()) if name == b"x-request-id"), "")
    made = passed if _PASSED_ID.fullmatch(passed) else uuid.uuid4().hex
    state[_SCOPE_KEY] = made
    return made


class ServerProblem(ProblemDetailsException):
    """A 5xx problem: its answer carries the request's correlation id, in the body and as a header."""

    def to_response(self, request: Request[Any, Any, Any]) -> Response[dict[str, Any]]:
        """The problem response, with `correlation_id` and `X-Request-Id`."""
        correlation = correlation_id(request.scope)
        extra = self.extra if isinstance(self.extra, dict) else {}
        self.extra = {**extra, CORRELATION_FIELD: correlation}
        self.headers = {**(self.headers or {}), CORRELATION_HEADER: correlation}
        return super().to_response(request)


class ConflictException(ClientException):
    """For `raises=` in route declarations (the OpenAPI document): the route may answer 409."""

    status_code = HTTP_409_CONFLICT


class UnprocessableException(ClientException):
    """For `raises=` in route declarations (the OpenAPI document): the route may answer 422."""

    status_code = HTTP_422_UNPROCESSABLE_ENTITY


class RangeNotSatisfiableException(ClientException):
    """For `raises=` in route declarations (the OpenAPI document): the route may answer 416."""

    status_code = HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE


def bad_request(detail: str) -> ProblemDetailsException:
    """A 400 problem naming the offending parameter and what it expects."""
    return ProblemDetailsException(status_code=HTTP_400_BAD_REQUEST, title="Bad request", detail=detail)


def unauthorized(detail: str, challenge: str = 'Bearer realm="fleetbridge"') -> ProblemDetailsException:
    """A 401 problem with a challenge (by default RFC 6750's): no usable credentials."""
    return ProblemDetailsException(
        status_code=HTTP_401_UNAUTHORIZED,
        title="Unauthorized",
        detail=detail,
        headers={"WWW-Authenticate": challenge},
    )


def forbidden(detail: str) -> ProblemDetailsException:
    """A 403 problem: the caller is known but may not do this."""
    return ProblemDetailsException(status_code=HTTP_403_FORBIDDEN, title="Forbidden", detail=detail)


def not_found(detail: str) -> ProblemDetailsException:
    """A 404 problem."""
    return ProblemDetailsException(status_code=HTTP_404_NOT_FOUND, title="Not found", detail=detail)


def conflict(detail: str, extra: dict[str, Any] | None = None) -> ProblemDetailsException:
    """A 409 problem: the request contradicts what exists (a name already taken); `extra` says more."""
    return ProblemDetailsException(status_code=HTTP_409_CONFLICT, title="Conflict", detail=detail, extra=extra)


def too_many_requests(detail: str, retry_after_s: int) -> ProblemDetailsException:
    """A 429 problem with `Retry-After` in seconds."""
    return ProblemDetailsException(
        status_code=HTTP_429_TOO_MANY_REQUESTS,
        title="Too many requests",
        detail=detail,
        headers={"Retry-After": str(retry_after_s)},
    )


def payload_too_large(detail: str) -> ProblemDetailsException:
    """A 413 problem: the body is larger than this route takes."""
    return ProblemDetailsException(
        status_code=HTTP_413_REQUEST_ENTITY_TOO_LARGE, title="Payload too large", detail=detail
    )


def unsupported_media_type(detail: str) -> ProblemDetailsException:
    """A 415 problem naming the content types the route takes."""
    return ProblemDetailsException(
        status_code=HTTP_415_UNSUPPORTED_MEDIA_TYPE, title="Unsupported media type", detail=detail
    )


def range_not_satisfiable(detail: str, size: int) -> ProblemDetailsException:
    """A 416 problem, with the `Content-Range` that names the file's size."""
    return ProblemDetailsException(
        status_code=HTTP_416_REQUESTED_RANGE_NOT_SATISFIABLE,
        title="Range not satisfiable",
        detail=detail,
        headers={"Content-Range": f"bytes */{size}"},
    )


def unprocessable(detail: str, extra: dict[str, Any] | None = None) -> ProblemDetailsException:
    """A 422 problem: the request was understood, and its content refused (`extra` says what, in detail)."""
    return ProblemDetailsException(
        status_code=HTTP_422_UNPROCESSABLE_ENTITY, title="Unprocessable content", detail=detail, extra=extra
    )


def unavailable(detail: str, retry_after_s: int, extra: dict[str, Any] | None = None) -> ProblemDetailsException:
    """A 503 problem with `Retry-After`: a service the route needs is away."""
    return _retry_later(HTTP_503_SERVICE_UNAVAILABLE, "Service unavailable", detail, retry_after_s, extra)


def gateway_timeout(detail: str, retry_after_s: int, extra: dict[str, Any] | None = None) -> ProblemDetailsException:
    """A 504 problem with `Retry-After`: a service behind the API did not answer in time."""
    return _retry_later(HTTP_504_GATEWAY_TIMEOUT, "Gateway timeout", detail, retry_after_s, extra)


def _retry_later(
    status: int, title: str, detail: str, retry_after_s: int, extra: dict[str, Any] | None
) -> ProblemDetailsException:
    return ServerProblem(
        status_code=status, title=title, detail=detail, headers={"Retry-After": str(retry_after_s)}, extra=extra
    )


def _backend_down(name: str) -> ServerProblem:
    # The exception's text stays in the log (`log_server_error`): it names hosts, ports and users.
    return ServerProblem(
        status_code=HTTP_503_SERVICE_UNAVAILABLE,
        title="Service unavailable",
        detail=f"{name} is unavailable; try again later (the API log has the details under correlation_id)",
        headers={"Retry-After": str(BACKEND_RETRY_AFTER_S)},
    )


def _redis_down(exc: RedisError) -> ProblemDetailsException:
    return _backend_down("Redis")


def _postgres_down(exc: psycopg.OperationalError) -> ProblemDetailsException:
    return _backend_down("PostgreSQL")


def _internal_error(exc: Exception) -> ProblemDetailsException:
    return ServerProblem(
        status_code=HTTP_500_INTERNAL_SERVER_ERROR,
        title="Internal server error",
        detail="the API failed to answer this request (the API log has the details under correlation_id)",
    )


def _bad_value(exc: psycopg.DataError) -> ProblemDetailsException:
    # SQLSTATE class 22 (and psycopg's own refusal of NUL characters) is about a value, and every value in
    # this API's SQL is a parameter from the request: the request is what must change.
    first_line = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return bad_request(f"a value in the request cannot be stored or compared: {first_line}")


def problem_details_plugin() -> ProblemDetailsPlugin:
    """Every HTTP error as `application/problem+json`; an unreachable backend as 503, not 500."""
    return ProblemDetailsPlugin(
        ProblemDetailsConfig(
            enable_for_all_http_exceptions=True,
            exception_to_problem_detail_map={
                RedisError: _redis_down,
                psycopg.DataError: _bad_value,
                # PoolTimeout (no connection within the timeout) is an OperationalError too.
                psycopg.OperationalError: _postgres_down,
                # Anything else a handler did not expect: a 500 that says nothing of the exception.
                Exception: _internal_error,
            },
        )
    )


async def log_server_error(exc: Exception, scope: Scope) -> None:
    """Log what the server got wrong; a client's bad request is its answer, not a log line.

    Litestar's own exception logging cannot tell the two apart (it logs every 4xx with a traceback, or
    nothing outside debug mode), so the app turns it off and uses this `after_exception` hook.
    """
    if (
        isinstance(exc, HTTPException | psycopg.DataError)
        and getattr(exc, "status_code", 400) < HTTP_500_INTERNAL_SERVER_ERROR
    ):
        return
    correlation = correlation_id(scope)
    if isinstance(exc, RedisError | psycopg.OperationalError):
        log.warning("%s: backend unavailable [%s=%s]: %s", scope.get("path"), CORRELATION_FIELD, correlation, exc)
        return
    if isinstance(exc, HTTPException):
        log.warning(
            "%s: answered %d [%s=%s]: %s",
            scope.get("path"),
            exc.status_code,
            CORRELATION_FIELD,
            correlation,
            exc.detail,
        )
        return
    log.error("%s: unhandled error [%s=%s]", scope.get("path"), CORRELATION_FIELD, correlation, exc_info=exc)


def precondition_failed(detail: str) -> ProblemDetailsException:
    """A 412 problem: the caller's If-Match names a version that is no longer current."""
    return ProblemDetailsException(status_code=HTTP_412_PRECONDITION_FAILED, title="Precondition failed", detail=detail)


def precondition_required(detail: str) -> ProblemDetailsException:
    """A 428 problem: a change that must name the version it was made against (If-Match) did not."""
    return ProblemDetailsException(
        status_code=HTTP_428_PRECONDITION_REQUIRED, title="Precondition required", detail=detail
    )
