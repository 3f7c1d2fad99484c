"""Each protocol reads its body within a limit and stops reading once it is passed: a declared
Content-Length over the limit is refused before a byte is read, a chunked body as soon as it
passes the limit (the rest is never pulled, so never held)."""

from __future__ import annotations

import json

import pytest
from starlette.testclient import TestClient

from shipyard.api._body import (
    INVOCATION_LIMIT,
    NATIVE_JSON_LIMIT,
    QUERY_LIMIT,
    SAGEMAKER_JSON_LIMIT,
    SMALL_JSON_LIMIT,
    MiB,
)
from tests.security._asgi import Answer, call

SAGEMAKER = {"x-amz-target": "SageMaker.ListTrainingJobs", "content-type": "application/x-amz-json-1.1"}
CLOUDWATCH = {
    "x-amz-target": "GraniteServiceVersion20100801.GetMetricStatistics",
    "content-type": "application/x-amz-json-1.0",
}
FORM = {"content-type": "application/x-www-form-urlencoded"}
NATIVE = {"content-type": "application/json"}
INVOKE = "/endpoints/some-endpoint/invocations"

# (method, path, headers, limit, status's error: where it is read from the answer, and its value)
PROTOCOLS = [
    pytest.param(
        "POST", "/", SAGEMAKER, SAGEMAKER_JSON_LIMIT, ("__type", "PayloadTooLargeException"), id="sagemaker"
    ),
    pytest.param(
        "POST", "/", CLOUDWATCH, SMALL_JSON_LIMIT, ("__type", "PayloadTooLargeException"), id="cloudwatch"
    ),
    pytest.param(
        "POST",
        INVOKE,
        {"content-type": "text/csv"},
        INVOCATION_LIMIT,
        ("x-amzn-errortype", "ValidationError"),
        id="invoke",
    ),
    pytest.param("POST", "/", FORM, QUERY_LIMIT, ("Code", "RequestEntityTooLarge"), id="sts-query"),
    pytest.param(
        "POST", "/api/v1/budgets", NATIVE, NATIVE_JSON_LIMIT, ("error", "PayloadTooLarge"), id="native"
    ),
]


def _kind(answer: Answer, where: str) -> str:
    if where == "x-amzn-errortype":
        return answer.headers[where]
    if where == "Code":
        return answer.body.decode().split("<Code>", 1)[1].split("</Code>", 1)[0]
    return answer.json()[where]


@pytest.mark.parametrize(("method", "path", "headers", "limit", "error"), PROTOCOLS)
def test_a_declared_length_over_the_limit_is_refused_before_reading(
    client: TestClient, method: str, path: str, headers: dict[str, str], limit: int, error: tuple[str, str]
) -> None:
    answer = call(client.app, method, path, {**headers, "content-length": str(limit + 1)}, [b"x" * 1024])
    assert answer.status == 413
    assert _kind(answer, error[0]) == error[1]
    assert f"larger than the limit of {limit} bytes" in answer.body.decode()
    assert answer.pulled == 0  # not a byte read
    assert answer.headers["connection"] == "close"  # the unread body is not taken for a request


@pytest.mark.parametrize(("method", "path", "headers", "limit", "error"), PROTOCOLS)
def test_a_chunked_body_is_refused_once_it_passes_the_limit(
    client: TestClient, method: str, path: str, headers: dict[str, str], limit: int, error: tuple[str, str]
) -> None:
    chunk = b"x" * (limit // 4)
    answer = call(client.app, method, path, {**headers, "transfer-encoding": "chunked"}, [chunk] * 40)
    assert answer.status == 413
    assert _kind(answer, error[0]) == error[1]
    assert answer.pulled == 5  # the fifth chunk passed the limit; the other 35 were never pulled


def test_the_largest_valid_sagemaker_member_fits(client: TestClient) -> None:
    """A pipeline definition of 1,048,576 characters, each escaped as JSON (6 MiB on the wire)."""
    body = json.dumps({"PipelineName": "p", "PipelineDefinition": "\u00e9" * 1_048_576}).encode()
    assert 6 * MiB < len(body) <= SAGEMAKER_JSON_LIMIT
    headers = {**SAGEMAKER, "x-amz-target": "SageMaker.UpdatePipeline", "content-length": str(len(body))}
    answer = call(client.app, "POST", "/", headers, [body])
    assert answer.status == 400, answer.body[:300]  # read and parsed: a pipeline that does not exist
    assert answer.json()["__type"] != "PayloadTooLargeException"


def test_s3_bodies_are_not_bound_by_the_json_limits(client: TestClient) -> None:
    assert client.put("/limits-bucket").status_code == 200
    data = b"y" * (SAGEMAKER_JSON_LIMIT + MiB)
    assert client.put("/limits-bucket/big", content=data).status_code == 200
    assert client.get("/limits-bucket/big").content == data
