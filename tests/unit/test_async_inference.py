"""Asynchronous inference's pure decisions: the config and request as validated, where answers go,
which queued requests are sent or expire, what a restart does with them, and the call's IAM action."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from shipyard.api._access import request_actions
from shipyard.core.async_inference import (
    AsyncInferenceConfig,
    AsyncInvocation,
    InvocationState,
    after_restart,
    capacity,
    failure_document,
    locations,
    notification,
    plan,
)
from shipyard.core.hosting import EndpointConfigSpec
from shipyard.errors import ValidationError

T0 = dt.datetime(2026, 12, 4, 12, 0, tzinfo=dt.UTC)
CONFIG = AsyncInferenceConfig.from_request(
    {
        "OutputConfig": {
            "S3OutputPath": "s3://out/answers/",
            "S3FailurePath": "s3://out/failures",
            "NotificationConfig": {
                "SuccessTopic": "arn:aws:sns:us-east-1:000000000000:ok",
                "IncludeInferenceResponseIn": ["SUCCESS_NOTIFICATION_TOPIC"],
            },
        },
        "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4},
    }
)


def _request(headers: dict[str, str], body: bytes = b"", received: dt.datetime = T0) -> AsyncInvocation:
    assert CONFIG is not None
    return AsyncInvocation.from_request("ep", CONFIG, headers, body, received=received, owner=None)


def test_the_config_is_read_and_its_mistakes_named() -> None:
    assert CONFIG is not None
    assert (CONFIG.output_path, CONFIG.failure_path, CONFIG.max_concurrency_per_instance) == (
        "s3://out/answers",
        "s3://out/failures",
        4,
    )
    assert AsyncInferenceConfig.from_request(None) is None
    default = AsyncInferenceConfig.from_request({"OutputConfig": {"S3OutputPath": "s3://b/o"}})
    assert default is not None and default.max_concurrency_per_instance == 1 and default.failure_path is None
    bad: list[tuple[dict[str, Any], str]] = [
        ({"OutputConfig": {}}, "AsyncInferenceConfig.OutputConfig.S3OutputPath"),
        ({"OutputConfig": {"S3OutputPath": "/tmp/x"}}, "AsyncInferenceConfig.OutputConfig.S3OutputPath"),
        (
            {"OutputConfig": {"S3OutputPath": "s3://b/o", "S3FailurePath": "b/f"}},
            "AsyncInferenceConfig.OutputConfig.S3FailurePath",
        ),
        (
            {
                "OutputConfig": {"S3OutputPath": "s3://b/o"},
                "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 0},
            },
            "AsyncInferenceConfig.ClientConfig.MaxConcurrentInvocationsPerInstance",
        ),
        (
            {"OutputConfig": {"S3OutputPath": "s3://b/o", "KmsKeyId": "key"}},
            "AsyncInferenceConfig.OutputConfig.KmsKeyId",
        ),
        (
            {"OutputConfig": {"S3OutputPath": "s3://b/o", "NotificationConfig": {"ErrorTopic": "topic"}}},
            "AsyncInferenceConfig.OutputConfig.NotificationConfig.ErrorTopic",
        ),
        (
            {
                "OutputConfig": {
                    "S3OutputPath": "s3://b/o",
                    "NotificationConfig": {"IncludeInferenceResponseIn": ["EVERYWHERE"]},
                }
            },
            "AsyncInferenceConfig.OutputConfig.NotificationConfig.IncludeInferenceResponseIn",
        ),
    ]
    for raw, field in bad:
        with pytest.raises(ValidationError) as error:
            AsyncInferenceConfig.from_request(raw)
        assert error.value.field == field and field in error.value.message


def test_an_endpoint_config_carries_its_async_config() -> None:
    variant = {"VariantName": "v", "ModelName": "m", "InstanceType": "ml.m5.large"}
    spec = EndpointConfigSpec.from_request(
        {
            "EndpointConfigName": "c",
            "ProductionVariants": [variant],
            "AsyncInferenceConfig": {"OutputConfig": {"S3OutputPath": "s3://b/o"}},
        }
    )
    assert spec.async_inference is not None and spec.async_inference.output_path == "s3://b/o"
    plain = EndpointConfigSpec.from_request({"EndpointConfigName": "c", "ProductionVariants": [variant]})
    assert plain.async_inference is None
    serverless = {
        "VariantName": "s",
        "ModelName": "m",
        "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 2},
    }
    with pytest.raises(ValidationError) as error:
        EndpointConfigSpec.from_request(
            {
                "EndpointConfigName": "c",
                "ProductionVariants": [serverless],
                "AsyncInferenceConfig": {"OutputConfig": {"S3OutputPath": "s3://b/o"}},
            }
        )
    assert error.value.field == "AsyncInferenceConfig" and "serverless" in error.value.message


def test_a_request_says_where_its_answer_goes() -> None:
    request = _request(
        {
            "x-amzn-sagemaker-inputlocation": "s3://in/req.json",
            "x-amzn-sagemaker-inference-id": "abc",
            "x-amzn-sagemaker-content-type": "application/json",
            "x-amzn-sagemaker-requestttlseconds": "120",
        }
    )
    assert (request.output_location, request.failure_location) == (
        "s3://out/answers/abc.out",
        "s3://out/failures/abc-error.out",
    )
    assert (request.ttl_seconds, request.timeout_seconds, request.content_type) == (
        120,
        900,
        "application/json",
    )
    assert request.expires == T0 + dt.timedelta(seconds=120)
    assert CONFIG is not None
    assert locations(CONFIG, "abc", extension="2026/12", filename="answer.json") == (
        "s3://out/answers/2026/12/answer.json",
        "s3://out/failures/2026/12/abc-error.out",
    )
    made_up = _request({}, body=b'{"x": 1}')
    assert len(made_up.inference_id) == 36 and made_up.body == b'{"x": 1}' and made_up.input_location is None
    again = AsyncInvocation.from_record(request.key, request.state.value, request.to_record())
    assert again == request
    inline = AsyncInvocation.from_record(made_up.key, "Running", made_up.to_record())
    assert inline.body == b'{"x": 1}' and inline.state == InvocationState.RUNNING


@pytest.mark.parametrize(
    ("headers", "body", "field"),
    [
        ({}, b"", "InputLocation"),
        ({"x-amzn-sagemaker-inputlocation": "s3://in/k"}, b"{}", "InputLocation"),
        ({"x-amzn-sagemaker-inputlocation": "s3://in/"}, b"", "InputLocation"),
        ({"x-amzn-sagemaker-inputlocation": "https://in/k"}, b"", "InputLocation"),
        ({}, b"x" * 128_001, "Body"),
        (
            {"x-amzn-sagemaker-inputlocation": "s3://in/k", "x-amzn-sagemaker-requestttlseconds": "59"},
            b"",
            "RequestTTLSeconds",
        ),
        (
            {
                "x-amzn-sagemaker-inputlocation": "s3://in/k",
                "x-amzn-sagemaker-invocationtimeoutseconds": "ten",
            },
            b"",
            "InvocationTimeoutSeconds",
        ),
        (
            {"x-amzn-sagemaker-inputlocation": "s3://in/k", "x-amzn-sagemaker-inference-id": " x"},
            b"",
            "InferenceId",
        ),
        (
            {"x-amzn-sagemaker-inputlocation": "s3://in/k", "x-amzn-sagemaker-filename": "../x"},
            b"",
            "Filename",
        ),
        (
            {
                "x-amzn-sagemaker-inputlocation": "s3://in/k",
                "x-amzn-sagemaker-s3outputpathextension": "a/../b",
            },
            b"",
            "S3OutputPathExtension",
        ),
    ],
)
def test_a_bad_request_is_refused_naming_the_field(headers: dict[str, str], body: bytes, field: str) -> None:
    with pytest.raises(ValidationError) as error:
        _request(headers, body)
    assert error.value.field == field


def test_the_plan_fills_free_capacity_oldest_first_and_expires_the_stale() -> None:
    def queued(name: str, seconds_ago: int, ttl: int = 3600) -> AsyncInvocation:
        return _request(
            {
                "x-amzn-sagemaker-inputlocation": "s3://in/k",
                "x-amzn-sagemaker-inference-id": name,
                "x-amzn-sagemaker-requestttlseconds": str(ttl),
            },
            received=T0 - dt.timedelta(seconds=seconds_ago),
        )

    a, b, c = queued("a", 30), queued("b", 20), queued("c", 10)
    stale = queued("stale", 100, ttl=60)
    now = T0
    decided = plan([c, stale, a, b], in_flight=1, capacity=3, now=now)
    assert [q.inference_id for q in decided.send] == ["a", "b"]
    assert [q.inference_id for q in decided.expired] == ["stale"]
    assert plan([a, b], in_flight=3, capacity=3, now=now).send == ()
    assert plan([a, b], in_flight=0, capacity=0, now=now).send == ()  # not serving: they wait
    assert capacity(4, 2) == 8 and capacity(4, 0) == 0


def test_a_restart_resumes_the_queued_and_gives_up_on_those_at_a_model_server() -> None:
    waiting = _request({"x-amzn-sagemaker-inputlocation": "s3://in/k"})
    running = AsyncInvocation.from_record("r", "Running", waiting.to_record())
    resumed, lost = after_restart([waiting, running])
    assert resumed == [waiting] and lost == [running]


def test_notifications_and_failure_documents() -> None:
    request = _request({"x-amzn-sagemaker-inputlocation": "s3://in/k", "x-amzn-sagemaker-inference-id": "n1"})
    done = notification(
        request, region="eu-west-1", now=T0, succeeded=True, content_type="text/csv", response=b"1,2"
    )
    assert done is not None
    assert (done["topic"], done["invocationStatus"], done["awsRegion"]) == (
        "arn:aws:sns:us-east-1:000000000000:ok",
        "Completed",
        "eu-west-1",
    )
    assert done["responseBody"] == {"content": "1,2", "encoding": "UTF-8"}
    assert done["responseParameters"]["outputLocation"] == "s3://out/answers/n1.out"
    binary = notification(request, region="r", now=T0, succeeded=True, response=b"\xff")
    assert binary is not None and binary["responseBody"]["encoding"] == "BASE64"
    assert (
        notification(request, region="r", now=T0, succeeded=False, failure="boom") is None
    )  # no error topic
    document = json.loads(failure_document(request, "ModelError", "it broke", 500))
    assert document == {
        "InferenceId": "n1",
        "ErrorCode": "ModelError",
        "Message": "it broke",
        "OriginalStatusCode": 500,
    }


def test_the_async_call_needs_its_own_iam_action() -> None:
    def action(path: str) -> tuple[str, str]:
        [needed] = request_actions(
            "runtime",
            method="POST",
            path=path,
            query={},
            headers={},
            region="us-east-1",
            account="000000000000",
        )
        return needed.action, needed.resource

    endpoint = "arn:aws:sagemaker:us-east-1:000000000000:endpoint/my-ep"
    assert action("/endpoints/my-ep/async-invocations") == ("sagemaker:InvokeEndpointAsync", endpoint)
    assert action("/endpoints/my-ep/invocations") == ("sagemaker:InvokeEndpoint", endpoint)


def test_an_input_past_sagemakers_1_gb_is_refused_before_it_is_read() -> None:
    from shipyard.core.async_inference import INPUT_LIMIT, check_input_size

    check_input_size(INPUT_LIMIT, "s3://in/big.csv")  # at the limit: read
    with pytest.raises(
        ValidationError, match="over asynchronous inference's limit of 1000000000 bytes"
    ) as big:
        check_input_size(INPUT_LIMIT + 1, "s3://in/big.csv")
    assert (big.value.field, big.value.value) == ("InputLocation", "s3://in/big.csv")
