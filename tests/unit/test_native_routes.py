"""The native API's surface: its routes (one router per resource), how they match, and how
Shipyard's errors answer; no platform needed (a route that needs one answers 503)."""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from shipyard.api.native import create_native_app
from shipyard.core.credentials import Principal

# Every operation of /api/v1/openapi.json, as it was when the routes lived in one closure.
ROUTES = [
    ("GET", "/api/v1/health"),
    ("GET", "/api/v1/info"),
    ("GET", "/api/v1/whoami"),
    ("GET", "/api/v1/instance-types"),
    ("GET", "/api/v1/instance-types/{name}"),
    ("GET", "/api/v1/training-jobs/{name}"),
    ("GET", "/api/v1/processing-jobs/{name}"),
    ("GET", "/api/v1/transform-jobs/{name}"),
    ("GET", "/api/v1/tuning-jobs/{name}"),
    ("GET", "/api/v1/pipelines/{name}/executions/{execution_id}"),
    ("GET", "/api/v1/training-jobs/{name}/metrics"),
    ("GET", "/api/v1/endpoints/{name}"),
    ("GET", "/api/v1/costs"),
    ("GET", "/api/v1/{collection}/{name}/utilization"),
    ("GET", "/api/v1/waste"),
    ("GET", "/api/v1/budgets"),
    ("POST", "/api/v1/budgets"),
    ("GET", "/api/v1/budgets/{name}"),
    ("DELETE", "/api/v1/budgets/{name}"),
    ("GET", "/api/v1/alerts"),
    ("POST", "/api/v1/estimates"),
    ("GET", "/api/v1/endpoints/{name}/metrics"),
    ("GET", "/api/v1/jobs/{kind}"),
    ("GET", "/api/v1/jobs/{kind}/{name}"),
    ("GET", "/api/v1/jobs/{kind}/{name}/log"),
    ("POST", "/api/v1/jobs/{kind}/{name}/stop"),
    ("GET", "/api/v1/tuning-jobs"),
    ("POST", "/api/v1/tuning-jobs/{name}/stop"),
    ("GET", "/api/v1/endpoints"),
    ("GET", "/api/v1/pipelines"),
    ("GET", "/api/v1/pipelines/{name}"),
    ("GET", "/api/v1/model-packages"),
    ("POST", "/api/v1/model-packages/{group}/{version}/approval"),
    ("GET", "/api/v1/users"),
    ("PATCH", "/api/v1/users/{name}"),
    ("GET", "/api/v1/quotas"),
    ("PUT", "/api/v1/quotas/{subject}"),
    ("DELETE", "/api/v1/quotas/{subject}"),
    ("GET", "/api/v1/notebook-instances"),
    ("POST", "/api/v1/notebook-instances/{name}/url"),
]


def as_root(app: Any) -> Any:
    """The native app as ShipyardApp serves it: the caller verified (here, the root)."""
    root = Principal.root("000000000000")

    async def served(scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] == "http":
            scope = {**scope, "state": {**scope.get("state", {}), "principal": root}}
        await app(scope, receive, send)

    return served


@pytest.fixture(scope="module")
def client() -> TestClient:
    return TestClient(as_root(create_native_app()))


def test_the_openapi_document_has_the_same_operations() -> None:
    doc = create_native_app().openapi()
    found = [(method.upper(), path) for path, ops in doc["paths"].items() for method in ops]
    assert sorted(found) == sorted(ROUTES)
    assert all(op["tags"] for ops in doc["paths"].values() for op in ops.values())


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        # before the server has opened its platform
        ("GET", "/api/v1/health", 503, {"detail": "Shipyard is starting"}),
        ("GET", "/api/v1/jobs/training/some-job", 503, {"detail": "Shipyard is starting"}),
        # /{collection}/{name}/utilization matches before /jobs/{kind}/{name}, as it always did
        ("GET", "/api/v1/jobs/training/utilization", 404, {"detail": "No jobs here"}),
        ("GET", "/api/v1/models/m/utilization", 404, {"detail": "No models here"}),
        # Shipyard's errors as JSON: the class, the message, the field
        (
            "GET",
            "/api/v1/costs?format=xml",
            400,
            {"error": "ValidationError", "message": "format 'xml' is not json or csv", "field": "format"},
        ),
        (
            "GET",
            "/api/v1/costs?start=yesterday",
            400,
            {
                "error": "ValidationError",
                "message": "start 'yesterday' is not an ISO date or time",
                "field": "start",
            },
        ),
        # FastAPI's own checks stay as they were
        ("GET", "/api/v1/jobs/training?limit=0", 422, None),
        ("DELETE", "/api/v1/health", 405, {"detail": "Method Not Allowed"}),
        ("GET", "/api/v1/nothing-here", 404, {"detail": "Not Found"}),
    ],
)
def test_answers(
    client: TestClient, method: str, path: str, status: int, body: dict[str, Any] | None
) -> None:
    answer = client.request(method, path)
    assert answer.status_code == status, answer.text
    if body is not None:
        assert answer.json() == body
