"""Bad input is a 4xx naming what was wrong, on every protocol (the probes of issue 21 that
answered 500 before)."""

from __future__ import annotations

import json
from typing import Any

import pytest
from starlette.testclient import TestClient

JSON_11 = "application/x-amz-json-1.1"


def _sagemaker(client: TestClient, operation: str, body: bytes | str) -> Any:
    return client.post(
        "/",
        content=body.encode() if isinstance(body, str) else body,
        headers={"X-Amz-Target": f"SageMaker.{operation}", "Content-Type": JSON_11},
    )


def _error(answer: Any) -> tuple[int, str, str]:
    body = answer.json()
    return answer.status_code, body["__type"], body["message"]


@pytest.mark.parametrize("opening", ["[", '{"a":'])
def test_json_nested_a_thousand_deep_is_a_serialization_error(client: TestClient, opening: str) -> None:
    closing = "]" if opening == "[" else "}"
    body = opening * 1000 + "1" + closing * 1000
    status, kind, message = _error(_sagemaker(client, "ListTrainingJobs", body))
    assert (status, kind) == (400, "SerializationException")
    assert "nests 1000 deep" in message and "at most 64" in message


def test_json_nested_within_the_bound_is_read(client: TestClient) -> None:
    # 60 levels inside a string member are text, not nesting: the request is only validated.
    body = json.dumps({"NameContains": "[" * 100, "MaxResults": 10})
    status, kind, message = _error(_sagemaker(client, "ListTrainingJobs", body))
    assert (status, kind) == (400, "ValidationException")
    assert "nameContains" in message


@pytest.mark.parametrize(
    ("operation", "body"),
    [
        ("ListTrainingJobs", {"MaxResults": None}),
        ("ListTrainingJobs", {"MaxResults": None, "NextToken": None, "SortOrder": None}),
        ("ListEndpoints", {"MaxResults": None}),
        ("ListPipelines", {"MaxResults": None}),
    ],
)
def test_null_members_count_as_absent(client: TestClient, operation: str, body: dict[str, Any]) -> None:
    answer = _sagemaker(client, operation, json.dumps(body))
    assert answer.status_code == 200, answer.text


def test_null_required_member_is_named(client: TestClient) -> None:
    status, kind, message = _error(_sagemaker(client, "DescribeTrainingJob", '{"TrainingJobName": null}'))
    assert (status, kind) == (400, "ValidationException")
    assert "Value null at 'trainingJobName'" in message


@pytest.mark.parametrize(
    ("body", "got"), [("[]", "array"), ('"x"', "string"), ("1", "number"), ("true", "boolean")]
)
def test_a_body_that_is_not_an_object_says_what_it_is(client: TestClient, body: str, got: str) -> None:
    status, kind, message = _error(_sagemaker(client, "ListTrainingJobs", body))
    assert (status, kind) == (400, "SerializationException")
    assert f"must be a JSON object, got a JSON {got}" in message


def test_wrong_type_names_the_member(client: TestClient) -> None:
    status, kind, message = _error(_sagemaker(client, "ListTrainingJobs", '{"MaxResults": "ten"}'))
    assert (status, kind) == (400, "ValidationException")
    assert "Value 'ten' at 'maxResults'" in message and "must be an integer" in message


def test_invalid_utf8_names_the_byte(client: TestClient) -> None:
    status, kind, message = _error(_sagemaker(client, "ListTrainingJobs", b'{"NameContains": "\xff"}'))
    assert (status, kind) == (400, "SerializationException")
    assert "not UTF-8: byte 0xff at offset 18" in message


def test_a_lone_surrogate_escape_is_refused(client: TestClient) -> None:
    body = '{"Tags": [{"Key": "k", "Value": "\\ud800"}], "ResourceArn": "arn:aws:sagemaker:us-east-1:000000000000:model/m"}'
    status, kind, message = _error(_sagemaker(client, "AddTags", body))
    assert (status, kind) == (400, "SerializationException")
    assert "lone UTF-16 surrogate" in message


@pytest.mark.parametrize(
    ("operation", "body", "member"),
    [
        # optional in botocore's model, needed by Shipyard
        (
            "CreateTrainingJob",
            {
                "TrainingJobName": "no-algorithm",
                "RoleArn": "arn:aws:iam::000000000000:role/r",
                "OutputDataConfig": {"S3OutputPath": "s3://b/o"},
            },
            "AlgorithmSpecification",
        ),
        ("ListPipelineExecutionSteps", {}, "PipelineExecutionArn"),
    ],
)
def test_omitted_members_a_handler_needs_are_named(
    client: TestClient, operation: str, body: dict[str, Any], member: str
) -> None:
    status, kind, message = _error(_sagemaker(client, operation, json.dumps(body)))
    assert (status, kind) == (400, "ValidationException")
    assert message == f"{member} is required"


@pytest.mark.parametrize("operation", ["GetLogEvents", "FilterLogEvents", "DescribeLogStreams"])
def test_logs_calls_without_a_log_group_name_it(client: TestClient, operation: str) -> None:
    answer = client.post(
        "/",
        content=json.dumps({"logStreamName": "s"}),
        headers={"X-Amz-Target": f"Logs_20140328.{operation}", "Content-Type": JSON_11},
    )
    assert answer.status_code == 400
    assert answer.json()["__type"] == "InvalidParameterException"
    assert answer.json()["message"] == "logGroupName or logGroupIdentifier is required"


@pytest.mark.parametrize(
    "target", ["SageMaker.NoSuchOperation", "SageMaker", "SageMaker.", "Nope.ListThings"]
)
def test_unknown_targets_are_named(client: TestClient, target: str) -> None:
    answer = client.post("/", content=b"{}", headers={"X-Amz-Target": target, "Content-Type": JSON_11})
    assert answer.status_code == 400
    assert answer.json()["__type"] == "UnknownOperationException"


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/jobs/training",
        "/api/v1/jobs/processing",
        "/api/v1/tuning-jobs",
        "/api/v1/endpoints",
        "/api/v1/pipelines",
        "/api/v1/model-packages",
    ],
)
@pytest.mark.parametrize("offset", ["9223372036854775808", "2147483648", "-1", "1e3", "ten"])
def test_native_offsets_out_of_range_name_the_parameter(client: TestClient, path: str, offset: str) -> None:
    answer = client.get(path, params={"offset": offset})
    assert answer.status_code == 422, answer.text
    assert [d["loc"] for d in answer.json()["detail"]] == [["query", "offset"]]


def test_native_version_out_of_range_names_the_parameter(client: TestClient) -> None:
    answer = client.post("/api/v1/model-packages/g/9223372036854775808/approval", json={"status": "Approved"})
    assert answer.status_code == 422, answer.text
    assert [d["loc"] for d in answer.json()["detail"]] == [["path", "version"]]


def test_native_largest_offset_is_an_empty_page(client: TestClient) -> None:
    answer = client.get("/api/v1/jobs/training", params={"offset": 2**31 - 1})
    assert answer.status_code == 200
    assert answer.json()["items"] == []
