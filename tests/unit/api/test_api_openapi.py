"""The OpenAPI document lists every error as an RFC 9457 problem, with the errors each route implies."""

from __future__ import annotations

from typing import Any

import pytest

from api.app import create_app
from api.openapi import PROBLEM_MEDIA_TYPE, PROBLEM_SCHEMA
from config import load_settings


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    settings = load_settings(
        {
            "FLEETBRIDGE_REDIS_URL": "redis://127.0.0.1:9/0",
            "FLEETBRIDGE_DATABASE_URL": "postgresql://nobody@127.0.0.1:9/none",
            "FLEETBRIDGE_API_JWT_SECRET": "a-secret-long-enough-for-hs256-0123456789",
        }
    )
    schema: dict[str, Any] = create_app(settings).openapi_schema.to_schema()
    return schema


def operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (path, method, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in {"get", "put", "post", "patch", "delete"}
    ]


def test_every_error_response_is_a_problem(document: dict[str, Any]) -> None:
    wrong = {
        f"{method.upper()} {path} {status}": response.get("content")
        for path, method, operation in operations(document)
        for status, response in operation["responses"].items()
        if int(status) >= 400
        and response.get("content")
        != {PROBLEM_MEDIA_TYPE: {"schema": {"$ref": f"#/components/schemas/{PROBLEM_SCHEMA}"}}}
    }
    assert wrong == {}
    assert document["components"]["schemas"][PROBLEM_SCHEMA]["required"] == ["status", "title"]


def test_routes_needing_credentials_list_401_and_403_and_public_ones_do_not(document: dict[str, Any]) -> None:
    listed = {
        f"{method.upper()} {path}": ({"401", "403"} <= operation["responses"].keys(), operation.get("security"))
        for path, method, operation in operations(document)
    }
    assert listed["GET /api/v1/devices"] == (True, None)
    assert listed["GET /healthz"] == (False, [{}])
    assert all(has_both for has_both, security in listed.values() if security != [{}])


def test_routes_naming_something_list_404_and_the_documents_hide_their_own_routes(document: dict[str, Any]) -> None:
    with_path_parameters = [operation for path, _, operation in operations(document) if "{" in path]
    assert with_path_parameters
    assert all("404" in operation["responses"] for operation in with_path_parameters)
    assert not any(path.startswith("/schema") for path in document["paths"])


def test_login_documents_wrong_credentials_and_throttling(document: dict[str, Any]) -> None:
    assert {"200", "400", "401", "429"} <= document["paths"]["/api/v1/auth/token"]["post"]["responses"].keys()
