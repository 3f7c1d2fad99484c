"""Asynchronous inference through boto3: an endpoint config with AsyncInferenceConfig,
InvokeEndpointAsync with its input in S3 (or inline), the answer and the failure written to S3,
notifications as log lines, MaxConcurrentInvocationsPerInstance honoured, a restart, and the
requests refused."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from shipyard.services.identity import ADMIN_CREDENTIALS, read_credentials
from tests._support import boto_client, tgz

ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
BUCKET = "async-tests"
SUCCESS_TOPIC = "arn:aws:sns:us-east-1:000000000000:async-success"
ERROR_TOPIC = "arn:aws:sns:us-east-1:000000000000:async-error"

# Echoes the request, after ``seconds`` of work, with the most requests it saw at once.
HANDLER = """
import json, threading, time

_lock = threading.Lock()
_now = _peak = 0

def model_fn(model_dir):
    return "model"

def transform_fn(model, body, content_type, accept):
    global _now, _peak
    request = json.loads(body)
    if request.get("fail"):
        raise RuntimeError("asked to fail: " + str(request["fail"]))
    print("started", request.get("x"), flush=True)
    with _lock:
        _now += 1
        _peak = max(_peak, _now)
    try:
        time.sleep(request.get("seconds", 0))
    finally:
        with _lock:
            peak = _peak
            _now -= 1
    answer = {"echo": request.get("x"), "peak": peak, "content_type": content_type, "accept": accept}
    return json.dumps(answer), "application/json"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("async") / "data") as server:
        yield server


@pytest.fixture(scope="module")
def clients(server: ServerProcess) -> tuple[Any, Any, Any]:
    s3 = boto_client("s3", server.url)
    s3.create_bucket(Bucket=BUCKET)
    return boto_client("sagemaker", server.url), s3, boto_client("sagemaker-runtime", server.url)


def deploy(
    sm: Any,
    s3: Any,
    *,
    asynchronous: dict[str, Any] | None,
    name: str | None = None,
    bucket: str = BUCKET,
    role: str = ROLE,
) -> str:
    """An endpoint of the echoing handler, its config with ``asynchronous`` as AsyncInferenceConfig."""
    name = name or f"async-{uuid.uuid4().hex[:8]}"
    s3.put_object(Bucket=bucket, Key=f"code/{name}.tar.gz", Body=tgz({"inference.py": HANDLER}))
    s3.put_object(Bucket=bucket, Key=f"model/{name}.tar.gz", Body=tgz({"model.txt": "unused"}))
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=role,
        PrimaryContainer={
            "Image": SKLEARN_IMAGE,
            "ModelDataUrl": f"s3://{bucket}/model/{name}.tar.gz",
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{bucket}/code/{name}.tar.gz",
            },
        },
    )
    extra = {"AsyncInferenceConfig": asynchronous} if asynchronous is not None else {}
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": name,
                "InitialInstanceCount": 1,
                "InstanceType": "ml.m5.large",
            }
        ],
        **extra,
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deadline = time.monotonic() + 600
    while (endpoint := sm.describe_endpoint(EndpointName=name))["EndpointStatus"] == "Creating":
        assert time.monotonic() < deadline, f"{name} still Creating"
        time.sleep(0.05)
    assert endpoint["EndpointStatus"] == "InService", endpoint.get("FailureReason")
    return name


def config(name: str, *, concurrency: int | None = None, notify: bool = False) -> dict[str, Any]:
    output: dict[str, Any] = {
        "S3OutputPath": f"s3://{BUCKET}/{name}/out",
        "S3FailurePath": f"s3://{BUCKET}/{name}/failed",
    }
    if notify:
        output["NotificationConfig"] = {
            "SuccessTopic": SUCCESS_TOPIC,
            "ErrorTopic": ERROR_TOPIC,
            "IncludeInferenceResponseIn": ["SUCCESS_NOTIFICATION_TOPIC"],
        }
    found: dict[str, Any] = {"OutputConfig": output}
    if concurrency is not None:
        found["ClientConfig"] = {"MaxConcurrentInvocationsPerInstance": concurrency}
    return found


def until_object(s3: Any, uri: str, timeout: float = 120) -> dict[str, Any]:
    """The object at ``uri`` once it exists: its content type and bytes."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    deadline = time.monotonic() + timeout
    while True:
        try:
            found = s3.get_object(Bucket=bucket, Key=key)
        except ClientError as exc:
            assert exc.response["Error"]["Code"] == "NoSuchKey", exc.response
            assert time.monotonic() < deadline, f"{uri} never written"
            time.sleep(0.05)
            continue
        return {"ContentType": found["ContentType"], "Body": found["Body"].read()}


def missing(s3: Any, uri: str) -> bool:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    try:
        s3.head_object(Bucket=bucket, Key=key)
    except ClientError:
        return True
    return False


def put_input(s3: Any, request: dict[str, Any], bucket: str = BUCKET, folder: str = "inputs") -> str:
    key = f"{folder}/{uuid.uuid4().hex}.json"
    s3.put_object(Bucket=bucket, Key=key, Body=json.dumps(request).encode())
    return f"s3://{bucket}/{key}"


def test_the_answer_and_the_failure_are_written_to_s3_and_notified_in_the_log(
    server: ServerProcess, clients: tuple[Any, Any, Any]
) -> None:
    sm, s3, runtime = clients
    name = f"async-{uuid.uuid4().hex[:8]}"
    deploy(sm, s3, asynchronous=config(name, notify=True), name=name)
    described = sm.describe_endpoint_config(EndpointConfigName=name)
    assert described["AsyncInferenceConfig"]["OutputConfig"]["S3OutputPath"] == f"s3://{BUCKET}/{name}/out"
    endpoint = sm.describe_endpoint(EndpointName=name)
    assert endpoint["AsyncInferenceConfig"] == described["AsyncInferenceConfig"]

    answer = runtime.invoke_endpoint_async(
        EndpointName=name,
        InputLocation=put_input(s3, {"x": 7}),
        ContentType="application/json",
        Accept="application/json",
        InferenceId="request-1",
    )
    assert answer["ResponseMetadata"]["HTTPStatusCode"] == 202
    assert answer["InferenceId"] == "request-1"
    assert answer["OutputLocation"] == f"s3://{BUCKET}/{name}/out/request-1.out"
    assert answer["FailureLocation"] == f"s3://{BUCKET}/{name}/failed/request-1-error.out"
    written = until_object(s3, answer["OutputLocation"])
    assert written["ContentType"] == "application/json"
    result = json.loads(written["Body"])
    assert (result["echo"], result["content_type"], result["accept"]) == (
        7,
        "application/json",
        "application/json",
    )
    assert missing(s3, answer["FailureLocation"])

    failing = runtime.invoke_endpoint_async(
        EndpointName=name, InputLocation=put_input(s3, {"fail": "seven"}), ContentType="application/json"
    )
    assert failing["InferenceId"]  # one made up when none is given
    failure = json.loads(until_object(s3, failing["FailureLocation"])["Body"])
    assert failure["ErrorCode"] == "ModelError" and failure["OriginalStatusCode"] == 500
    assert "asked to fail: seven" in failure["Message"]
    assert missing(s3, failing["OutputLocation"])

    inline = runtime.invoke_endpoint_async(
        EndpointName=name, Body=json.dumps({"x": "inline"}).encode(), ContentType="application/json"
    )
    assert json.loads(until_object(s3, inline["OutputLocation"])["Body"])["echo"] == "inline"

    # No SNS here: what SageMaker would publish is a line in the endpoint's log group.
    logs = boto_client("logs", server.url)
    group = f"/aws/sagemaker/Endpoints/{name}"
    streams = [s["logStreamName"] for s in logs.describe_log_streams(logGroupName=group)["logStreams"]]
    assert "AsyncInference/i-notifications" in streams
    deadline = time.monotonic() + 30
    while True:
        events = logs.get_log_events(
            logGroupName=group, logStreamName="AsyncInference/i-notifications", startFromHead=True
        )["events"]
        messages = [json.loads(e["message"]) for e in events]
        if len(messages) >= 3:
            break
        assert time.monotonic() < deadline, messages
        time.sleep(0.05)
    by_id = {m["inferenceId"]: m for m in messages}
    done = by_id["request-1"]
    assert (done["topic"], done["invocationStatus"]) == (SUCCESS_TOPIC, "Completed")
    assert done["responseParameters"]["outputLocation"] == answer["OutputLocation"]
    assert json.loads(done["responseBody"]["content"])["echo"] == 7  # IncludeInferenceResponseIn
    failed = by_id[failing["InferenceId"]]
    assert (failed["topic"], failed["invocationStatus"]) == (ERROR_TOPIC, "Failed")
    assert "asked to fail: seven" in failed["failureReason"] and "responseBody" not in failed


def test_max_concurrent_invocations_per_instance_is_honoured(clients: tuple[Any, Any, Any]) -> None:
    sm, s3, runtime = clients
    peaks = {}
    for concurrency in (1, 3):
        name = f"async-{uuid.uuid4().hex[:8]}"
        deploy(sm, s3, asynchronous=config(name, concurrency=concurrency), name=name)
        answers = [
            runtime.invoke_endpoint_async(
                EndpointName=name,
                InputLocation=put_input(s3, {"x": i, "seconds": 0.5}),
                ContentType="application/json",
            )
            for i in range(6)
        ]
        results = [json.loads(until_object(s3, a["OutputLocation"])["Body"]) for a in answers]
        assert sorted(r["echo"] for r in results) == list(range(6))
        peaks[concurrency] = max(r["peak"] for r in results)
        sm.delete_endpoint(EndpointName=name)
    assert peaks == {1: 1, 3: 3}


def test_bad_requests_are_refused_naming_the_problem(
    server: ServerProcess, clients: tuple[Any, Any, Any]
) -> None:
    from botocore.config import Config

    _, s3, _ = clients
    unchecked = Config(parameter_validation=False, retries={"max_attempts": 1})  # the server's checks
    sm = boto_client("sagemaker", server.url, config=unchecked)
    runtime = boto_client("sagemaker-runtime", server.url, config=unchecked)

    def refused(call: Any) -> dict[str, Any]:
        with pytest.raises(ClientError) as error:
            call()
        return dict(error.value.response["Error"])

    sm.create_model(ModelName="async-bad", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": SKLEARN_IMAGE})
    variant = {"VariantName": "v", "ModelName": "async-bad", "InstanceType": "ml.m5.large"}
    for asynchronous, field in (
        ({"OutputConfig": {}}, "AsyncInferenceConfig.OutputConfig.S3OutputPath"),
        ({"OutputConfig": {"S3OutputPath": "/tmp/out"}}, "AsyncInferenceConfig.OutputConfig.S3OutputPath"),
        (
            {
                "OutputConfig": {"S3OutputPath": f"s3://{BUCKET}/o"},
                "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 0},
            },
            "MaxConcurrentInvocationsPerInstance",
        ),
        (
            {
                "OutputConfig": {
                    "S3OutputPath": f"s3://{BUCKET}/o",
                    "NotificationConfig": {"SuccessTopic": "my-topic"},
                }
            },
            "SuccessTopic",
        ),
    ):
        error = refused(
            lambda a=asynchronous: sm.create_endpoint_config(
                EndpointConfigName="async-bad", ProductionVariants=[variant], AsyncInferenceConfig=a
            )
        )
        assert error["Code"] == "ValidationException", error
        assert field.lower() in error["Message"].lower(), error  # as botocore's schema spells it, too

    name = deploy(sm, s3, asynchronous=None)  # a real-time endpoint
    error = refused(
        lambda: runtime.invoke_endpoint_async(EndpointName=name, InputLocation=put_input(s3, {"x": 1}))
    )
    assert error["Code"] == "ValidationError" and "has no AsyncInferenceConfig" in error["Message"]
    error = refused(
        lambda: runtime.invoke_endpoint_async(EndpointName="no-such-endpoint", InputLocation="s3://b/k")
    )
    assert error["Code"] == "ValidationError" and "no-such-endpoint" in error["Message"]

    name = deploy(sm, s3, asynchronous=config("bad"))
    for kwargs, field in (
        ({}, "InputLocation"),
        ({"InputLocation": "/local/file"}, "InputLocation"),
        ({"InputLocation": f"s3://{BUCKET}/x", "RequestTTLSeconds": 5}, "RequestTTLSeconds"),
        ({"InputLocation": f"s3://{BUCKET}/x", "InvocationTimeoutSeconds": 7200}, "InvocationTimeoutSeconds"),
        ({"InputLocation": f"s3://{BUCKET}/x", "InferenceId": "x" * 65}, "InferenceId"),
        ({"InputLocation": f"s3://{BUCKET}/x", "Body": b"{}"}, "InputLocation or Body"),
    ):
        error = refused(lambda k=kwargs: runtime.invoke_endpoint_async(EndpointName=name, **k))
        assert error["Code"] == "ValidationError" and field in error["Message"], (kwargs, error)

    # An input that is not there is the request's failure, written where its answer would be.
    gone = runtime.invoke_endpoint_async(
        EndpointName=name, InputLocation=f"s3://{BUCKET}/inputs/nothing.json"
    )
    failure = json.loads(until_object(s3, gone["FailureLocation"])["Body"])
    assert failure["ErrorCode"] == "InputNotFound" and "inputs/nothing.json" in failure["Message"]


def test_without_a_failure_path_a_failure_is_said_in_the_endpoints_log(
    server: ServerProcess, clients: tuple[Any, Any, Any]
) -> None:
    sm, s3, runtime = clients
    name = deploy(sm, s3, asynchronous={"OutputConfig": {"S3OutputPath": f"s3://{BUCKET}/nofail/out"}})
    answer = runtime.invoke_endpoint_async(
        EndpointName=name, InputLocation=put_input(s3, {"fail": "quietly"}), InferenceId="no-failure-path"
    )
    assert "FailureLocation" not in answer
    logs = boto_client("logs", server.url)
    deadline = time.monotonic() + 60
    while not (
        found := logs.filter_log_events(
            logGroupName=f"/aws/sagemaker/Endpoints/{name}", filterPattern='"no-failure-path: failed"'
        )["events"]
    ):
        assert time.monotonic() < deadline, "the failure was never logged"
        time.sleep(0.05)
    assert "ModelError" in found[0]["message"] and "asked to fail: quietly" in found[0]["message"]
    assert missing(s3, answer["OutputLocation"])


def test_deleting_the_endpoint_fails_its_queued_requests(clients: tuple[Any, Any, Any]) -> None:
    sm, s3, runtime = clients
    name = deploy(sm, s3, asynchronous=config("deleted", concurrency=1))
    logs = boto_client("logs", runtime.meta.endpoint_url)
    slow = runtime.invoke_endpoint_async(
        EndpointName=name, InputLocation=put_input(s3, {"x": "slow", "seconds": 600})
    )
    queued = runtime.invoke_endpoint_async(EndpointName=name, InputLocation=put_input(s3, {"x": "queued"}))
    deadline = time.monotonic() + 60
    while not logs.filter_log_events(
        logGroupName=f"/aws/sagemaker/Endpoints/{name}", filterPattern='"started slow"'
    )["events"]:
        assert time.monotonic() < deadline, "the slow request never reached its model server"
        time.sleep(0.05)
    sm.delete_endpoint(EndpointName=name)  # its model servers stop: the slow one is cut off
    cut = json.loads(until_object(s3, slow["FailureLocation"])["Body"])
    assert cut["ErrorCode"] == "ServiceUnavailable", cut
    never = json.loads(until_object(s3, queued["FailureLocation"])["Body"])
    assert never["ErrorCode"] == "EndpointUnavailable" and "deleted" in never["Message"], never
    assert missing(s3, queued["OutputLocation"])


def test_a_restart_resumes_the_queue_and_fails_what_was_at_a_model_server(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir).start()
    try:
        sm, s3, runtime = (boto_client(s, server.url) for s in ("sagemaker", "s3", "sagemaker-runtime"))
        s3.create_bucket(Bucket=BUCKET)
        name = deploy(sm, s3, asynchronous=config("restart", concurrency=1))
        slow = runtime.invoke_endpoint_async(
            EndpointName=name, InputLocation=put_input(s3, {"x": "slow", "seconds": 600})
        )
        queued = runtime.invoke_endpoint_async(
            EndpointName=name, InputLocation=put_input(s3, {"x": "queued"})
        )
        logs = boto_client("logs", server.url)
        deadline = time.monotonic() + 60
        while not logs.filter_log_events(
            logGroupName=f"/aws/sagemaker/Endpoints/{name}", filterPattern='"started slow"'
        )["events"]:
            assert time.monotonic() < deadline, "the slow request never reached its model server"
            time.sleep(0.05)
        server.stop()
        server = ServerProcess(data_dir, port=server.port).start()
        s3 = boto_client("s3", server.url)
        failure = json.loads(until_object(s3, slow["FailureLocation"])["Body"])
        assert failure["ErrorCode"] == "ServerRestarted" and "not retried" in failure["Message"]
        assert missing(s3, slow["OutputLocation"])
        assert json.loads(until_object(s3, queued["OutputLocation"])["Body"])["echo"] == "queued"
    finally:
        server.stop()


def test_the_caller_needs_the_action_and_the_input_and_the_owner_writes_the_answer(tmp_path: Path) -> None:
    """With auth on: sagemaker:InvokeEndpointAsync on the endpoint, s3:GetObject on the input (in a
    bucket the caller reaches), and the answer written only where the endpoint's owner may write."""
    role = "arn:aws:iam::000000000000:role/ShipyardExecutionRole"
    with ServerProcess(tmp_path / "data", env={"SHIPYARD_AUTH": "on"}) as server:
        admin_key = read_credentials(server.data_dir / ADMIN_CREDENTIALS)
        assert admin_key is not None
        iam = boto_client(
            "iam", server.url, aws_access_key_id=admin_key[0], aws_secret_access_key=admin_key[1]
        )
        keys = {}
        for user in ("alice", "bob"):
            iam.create_user(UserName=user)
            statements = [
                {"Effect": "Allow", "Action": ["sagemaker:*", "s3:*", "logs:*"], "Resource": "*"},
                {"Effect": "Allow", "Action": "iam:PassRole", "Resource": role},
                {"Effect": "Deny", "Action": "s3:GetObject", "Resource": "arn:aws:s3:::alice-async/secret/*"},
                {
                    "Effect": "Deny",
                    "Action": "s3:PutObject",
                    "Resource": "arn:aws:s3:::alice-async/forbidden/*",
                },
            ]
            document = json.dumps({"Version": "2012-10-17", "Statement": statements})
            iam.put_user_policy(UserName=user, PolicyName="work", PolicyDocument=document)
            key = iam.create_access_key(UserName=user)["AccessKey"]
            keys[user] = {
                "aws_access_key_id": key["AccessKeyId"],
                "aws_secret_access_key": key["SecretAccessKey"],
            }
        sm, s3, runtime = (
            boto_client(s, server.url, **keys["alice"]) for s in ("sagemaker", "s3", "sagemaker-runtime")
        )
        bob_s3 = boto_client("s3", server.url, **keys["bob"])
        s3.create_bucket(Bucket="alice-async")
        bob_s3.create_bucket(Bucket="bob-async")
        s3.put_object(Bucket="alice-async", Key="secret/in.json", Body=b'{"x": 1}')
        bobs = put_input(bob_s3, {"x": "bob's"}, bucket="bob-async")

        asynchronous = {
            "OutputConfig": {
                "S3OutputPath": "s3://alice-async/forbidden",
                "S3FailurePath": "s3://alice-async/failed",
            }
        }
        name = deploy(sm, s3, asynchronous=asynchronous, bucket="alice-async", role=role)

        def refused(call: Any, action: str, resource: str) -> None:
            with pytest.raises(ClientError) as error:
                call()
            found = error.value.response["Error"]
            assert found["Code"] == "AccessDeniedException", found
            assert f"not authorized to perform: {action} on resource: {resource}" in found["Message"], found

        # The input must be the caller's to read: a denied key, another user's bucket.
        refused(
            lambda: runtime.invoke_endpoint_async(
                EndpointName=name, InputLocation="s3://alice-async/secret/in.json"
            ),
            "s3:GetObject",
            "arn:aws:s3:::alice-async/secret/in.json",
        )
        refused(
            lambda: runtime.invoke_endpoint_async(EndpointName=name, InputLocation=bobs),
            "s3:GetObject",
            "arn:aws:s3:::" + bobs.removeprefix("s3://"),
        )
        # The answer is written as alice would: she may not write under forbidden/, so it fails.
        answer = runtime.invoke_endpoint_async(
            EndpointName=name, InputLocation=put_input(s3, {"x": 2}, bucket="alice-async")
        )
        failure = json.loads(until_object(s3, answer["FailureLocation"])["Body"])
        assert failure["ErrorCode"] == "AccessDenied"
        assert "s3:PutObject on resource: arn:aws:s3:::alice-async/forbidden/" in failure["Message"]
        assert missing(s3, answer["OutputLocation"])

        # Without sagemaker:InvokeEndpointAsync, the call is refused (InvokeEndpoint is not enough).
        deny = {"Effect": "Deny", "Action": "sagemaker:InvokeEndpointAsync", "Resource": "*"}
        iam.put_user_policy(
            UserName="alice",
            PolicyName="no-async",
            PolicyDocument=json.dumps({"Version": "2012-10-17", "Statement": [deny]}),
        )
        refused(
            lambda: runtime.invoke_endpoint_async(
                EndpointName=name, InputLocation=put_input(s3, {"x": 3}, bucket="alice-async")
            ),
            "sagemaker:InvokeEndpointAsync",
            f"arn:aws:sagemaker:us-east-1:000000000000:endpoint/{name}",
        )
        assert runtime.invoke_endpoint(EndpointName=name, Body=b'{"x": 4}', ContentType="application/json")[
            "Body"
        ].read()
