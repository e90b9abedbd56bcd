"""The OpenAPI document names every status the API answers, each error with the error body
(issue 13, item 8): it had 401, 404 and 422 everywhere (also where they cannot happen) and
none of 400, 403 (agent routes, admins only), 409, 413, 503, nor the 200 of an idempotent
replay. tests/test_api_fuzz.py checks the answers against it; this checks the document."""

from __future__ import annotations

from typing import Any

import pytest

from brev import api
from tests.conftest import Plane

METHODS = ("get", "post", "put", "delete")


@pytest.fixture
def document(plane: Plane) -> dict[str, Any]:
    answer = plane.http().get("/openapi.json")
    assert answer.status_code == 200
    found: dict[str, Any] = answer.json()
    return found


def _operations(document: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [
        (method.upper(), path, operation)
        for path, item in document["paths"].items()
        for method, operation in item.items()
        if method in METHODS
    ]


def _schema_of(response: dict[str, Any]) -> str:
    ref: str = response["content"]["application/json"]["schema"]["$ref"]
    return ref.rsplit("/", 1)[-1]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_every_error_is_documented_with_the_error_body(document: dict[str, Any]) -> None:
    operations = _operations(document)
    assert len(operations) > 40
    for method, path, operation in operations:
        responses = operation["responses"]
        where = f"{method} {path}"
        assert {"413", "503"} <= set(responses), where
        assert responses["503"]["headers"]["Retry-After"]["schema"] == {"type": "integer"}
        if path.startswith(api.API_PREFIX):
            assert {"401", "403", "422"} <= set(responses), where
        if "{org}" in path:
            assert "404" in responses, where
        if "requestBody" in operation:
            assert "400" in responses, where
        for status, response in responses.items():
            if status >= "400" and path != "/healthz":
                assert _schema_of(response) == "ErrorBody", (where, status)
    assert "HTTPValidationError" not in document["components"]["schemas"]


@pytest.mark.parametrize("database_url", ["sqlite"], indirect=True)
def test_the_statuses_of_particular_routes(document: dict[str, Any]) -> None:
    paths = document["paths"]
    prefix = api.API_PREFIX
    create = paths[f"{prefix}/orgs/{{org}}/instances"]["post"]["responses"]
    assert _schema_of(create["200"]) == _schema_of(create["201"]) == "InstanceDetail"
    for path, method in [
        (f"{prefix}/orgs", "post"),
        (f"{prefix}/orgs/{{org}}/members", "post"),
        (f"{prefix}/orgs/{{org}}/members/{{email}}", "put"),
        (f"{prefix}/orgs/{{org}}/members/{{email}}", "delete"),
        (f"{prefix}/orgs/{{org}}/tokens", "post"),
        (f"{prefix}/orgs/{{org}}/instances", "post"),
        (f"{prefix}/orgs/{{org}}/instances/plan", "post"),
        (f"{prefix}/orgs/{{org}}/instances/{{name}}/start", "post"),
        (f"{prefix}/orgs/{{org}}/instances/{{name}}/stop", "post"),
        (f"{prefix}/orgs/{{org}}/instances/{{name}}/lease", "post"),
        (f"{prefix}/orgs/{{org}}/nodes", "post"),
        (f"{prefix}/orgs/{{org}}/nodes/{{name}}", "delete"),
        (f"{prefix}/orgs/{{org}}/providers/{{provider}}", "delete"),
        (f"{prefix}/orgs/{{org}}/catalog/refresh", "post"),
    ]:
        assert "409" in paths[path][method]["responses"], (method, path)
    for path in (f"{prefix}/agent/reports", f"{prefix}/agent/assignments"):
        method = "post" if path.endswith("reports") else "get"
        assert {"403", "410"} <= set(paths[path][method]["responses"]), path
    for path in ("/instances", "/nodes", "/fleet"):
        assert "304" in paths[f"{prefix}/orgs/{{org}}{path}"]["get"]["responses"], path
    health = paths["/healthz"]["get"]["responses"]
    assert set(health) == {"200", "413", "503"}
    assert _schema_of(health["503"]) == "HealthUnavailable"
    assert "401" not in paths["/metrics"]["get"]["responses"]
