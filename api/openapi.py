"""What the OpenAPI document says about errors: every one is an RFC 9457 problem, and it is listed.

Litestar documents a route's success response and the exceptions a handler declares in `raises`, each
with its own `{status_code, detail, extra}` shape; this API answers every error as
`application/problem+json` (api/problems.py). So, once the document is built, `document_problems`
rewrites every 4xx/5xx response to the `Problem` schema and adds the errors that follow from how a route
is reached rather than from what its handler does: 400 (bad parameters or body) everywhere, 401 and 403
on every route that needs credentials, 404 where the path names something, 503 where a backend is needed.
Route-specific errors (409, 413, 429, …) stay declared where they arise, in the handler's `raises`.
Integrators generate clients from this document, and the schemathesis test holds the API to it.
"""

from __future__ import annotations

from typing import Final

from litestar.openapi.spec import OpenAPI, OpenAPIMediaType, OpenAPIResponse, OpenAPIType, Operation, Reference, Schema

PROBLEM_MEDIA_TYPE: Final = "application/problem+json"
PROBLEM_SCHEMA: Final = "Problem"
_METHODS: Final = ("get", "put", "post", "delete", "patch")
_FIRST_ERROR: Final = 400
# Routes that answer without a backend (liveness, the documents themselves) never say 503.
_NO_BACKEND_PATHS: Final = frozenset({"/healthz", "/asyncapi.json"})
_DESCRIPTIONS: Final = {
    400: "Bad request: a parameter or the body is not valid; `detail` names it and what it expects",
    401: "No usable credentials: a missing, expired or forged token, or an unknown API key",
    403: "The caller's role may not do this",
    404: "Not found (or not visible to this caller)",
    503: "A backend (PostgreSQL or Redis) is unavailable; retry later",
}


def _problem_schema() -> Schema:
    return Schema(
        type=OpenAPIType.OBJECT,
        description="An RFC 9457 problem: what went wrong, for whoever reads the response",
        required=["status", "title"],
        properties={
            "type": Schema(type=OpenAPIType.STRING, description="a URI identifying the problem type"),
            "title": Schema(type=OpenAPIType.STRING),
            "status": Schema(type=OpenAPIType.INTEGER),
            "detail": Schema(type=OpenAPIType.STRING),
            "instance": Schema(type=OpenAPIType.STRING),
            "correlation_id": Schema(
                type=OpenAPIType.STRING,
                description="server errors (5xx) only: the id the API logged the cause under (also `X-Request-Id`)",
            ),
        },
    )


def _problem_response(description: str) -> OpenAPIResponse:
    reference = Reference(ref=f"#/components/schemas/{PROBLEM_SCHEMA}")
    return OpenAPIResponse(description=description, content={PROBLEM_MEDIA_TYPE: OpenAPIMediaType(schema=reference)})


def _needs_credentials(operation: Operation) -> bool:
    # `security: [{}]` is how the public routes say that they need none; unset inherits the document's.
    return operation.security != [{}]


def _implied_statuses(path: str, operation: Operation) -> set[int]:
    statuses = {400}
    if _needs_credentials(operation):
        statuses |= {401, 403}
    if "{" in path:
        statuses.add(404)
    if path not in _NO_BACKEND_PATHS:
        statuses.add(503)
    return statuses


def document_problems(openapi: OpenAPI) -> None:
    """Rewrite `openapi` in place: every error response a `Problem`, and the implied ones listed."""
    openapi.components.schemas = {**(openapi.components.schemas or {}), PROBLEM_SCHEMA: _problem_schema()}
    for path, item in (openapi.paths or {}).items():
        for method in _METHODS:
            operation: Operation | None = getattr(item, method)
            if operation is None:
                continue
            responses = operation.responses if operation.responses is not None else {}
            for implied in _implied_statuses(path, operation):
                responses.setdefault(str(implied), _problem_response(_DESCRIPTIONS[implied]))
            for code, response in list(responses.items()):
                if code.isdigit() and int(code) >= _FIRST_ERROR and isinstance(response, OpenAPIResponse):
                    responses[code] = _problem_response(_DESCRIPTIONS.get(int(code), response.description))
            operation.responses = responses
