"""Serverless endpoints (a ProductionVariant's ServerlessConfig) through boto3: InService with no
model server running, the first request starts one and is answered, requests that come meanwhile
wait for the same one, the server stops after the site's idle time, MaxConcurrency throttles, the
model server's memory is MemorySizeInMB,
ProvisionedConcurrency's warm copies, SageMaker's validation errors, and each request billed for its compute time at its memory."""

from __future__ import annotations

import concurrent.futures
import json
import time
import uuid
from collections.abc import Callable, Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from tests._support import boto_client, tgz
from tests.integration.test_endpoints import BUCKET, IRIS, ROLE, SKLEARN_IMAGE, train_iris

SLOW = """
import json, os, time
import joblib

def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(rows, model):
    if rows == "slow":  # holds its model server a while: the test's other requests come meanwhile
        time.sleep(3)
        return "slept"
    if rows == "hog":  # more than the variant's 1024 MB
        return len(bytearray(1536 * 2**20))
    return model.predict(rows).tolist()
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    data = tmp_path_factory.mktemp("serverless") / "data"
    # Idle after 4 s: long enough that a loaded machine's pause between a request and the next look
    # is not mistaken for idleness, short enough to watch a scale to zero.
    with ServerProcess(data, env={"SHIPYARD_SERVERLESS_IDLE_SECONDS": "4"}) as server:
        yield server


@pytest.fixture(scope="module")
def clients(server: ServerProcess) -> tuple[Any, Any, Any]:
    s3 = boto_client("s3", server.url)
    s3.create_bucket(Bucket=BUCKET)
    return boto_client("sagemaker", server.url), s3, boto_client("sagemaker-runtime", server.url)


@pytest.fixture(scope="module")
def model_data(clients: tuple[Any, Any, Any]) -> str:
    return train_iris(clients[0], clients[1])


def _model(sm: Any, s3: Any, model_data: str, code: str | None = None) -> str:
    name = f"sl-{uuid.uuid4().hex[:8]}"
    environment = {}
    if code:
        key = f"code/{name}/sourcedir.tar.gz"
        s3.put_object(Bucket=BUCKET, Key=key, Body=tgz({"inference.py": code}))
        environment = {
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{BUCKET}/{key}",
        }
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": SKLEARN_IMAGE, "ModelDataUrl": model_data, "Environment": environment},
    )
    return name


def _deploy(
    sm: Any,
    s3: Any,
    model_data: str,
    *,
    memory: int,
    concurrency: int,
    code: str | None = None,
    provisioned: int | None = None,
) -> str:
    name = _model(sm, s3, model_data, code)
    serverless = {"MemorySizeInMB": memory, "MaxConcurrency": concurrency}
    if provisioned is not None:
        serverless["ProvisionedConcurrency"] = provisioned
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[{"VariantName": "AllTraffic", "ModelName": name, "ServerlessConfig": serverless}],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    deadline = time.monotonic() + 300
    while (endpoint := sm.describe_endpoint(EndpointName=name))["EndpointStatus"] == "Creating":
        assert time.monotonic() < deadline, f"{name} still Creating"
        time.sleep(0.05)
    assert endpoint["EndpointStatus"] == "InService", endpoint.get("FailureReason")
    return name


def _view(server: ServerProcess, name: str) -> dict[str, Any]:
    """The endpoint as the console shows it: its model servers, and what it cost."""
    answer = httpx.get(f"{server.url}/api/v1/endpoints/{name}")
    answer.raise_for_status()
    return answer.json()  # type: ignore[no-any-return]


def _instances(server: ServerProcess, name: str) -> list[dict[str, Any]]:
    return [i for v in _view(server, name)["variants"] for i in v["instances"]]


def _until(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := condition()):
        assert time.monotonic() < deadline, f"still not {what}"
        time.sleep(0.05)
    return found


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/ping", timeout=1)
    except httpx.TransportError:
        return False
    return True


def _invoke(runtime: Any, name: str, body: Any) -> Any:
    answer = runtime.invoke_endpoint(EndpointName=name, Body=json.dumps(body), ContentType="application/json")
    return json.loads(answer["Body"].read())


def test_scales_from_zero_on_a_request_and_back_to_zero_when_idle(
    server: ServerProcess, clients: tuple[Any, Any, Any], model_data: str
) -> None:
    sm, s3, runtime = clients
    name = _deploy(sm, s3, model_data, memory=2048, concurrency=2)
    [variant] = sm.describe_endpoint(EndpointName=name)["ProductionVariants"]
    expected = {"MemorySizeInMB": 2048, "MaxConcurrency": 2}
    assert variant["CurrentServerlessConfig"] == variant["DesiredServerlessConfig"] == expected
    assert "CurrentInstanceCount" not in variant
    assert _instances(server, name) == []  # InService, no model server running

    assert _invoke(runtime, name, IRIS) == [0, 2]  # the cold start: started, then answered
    [instance] = _instances(server, name)
    assert instance["alive"] and _answers(instance["url"])
    assert _invoke(runtime, name, IRIS) == [0, 2]  # warm: the same model server
    assert [i["id"] for i in _instances(server, name)] == [instance["id"]]

    _until(lambda: _instances(server, name) == [], "scaled to zero")
    _until(lambda: not _answers(instance["url"]), "stopped")  # its process ended
    assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"

    # Two requests at once on a scaled-to-zero endpoint: both wait for the one model server.
    with concurrent.futures.ThreadPoolExecutor(2) as pool:
        answers = list(pool.map(lambda _: _invoke(runtime, name, IRIS), range(2)))
    assert answers == [[0, 2], [0, 2]]
    assert len(_instances(server, name)) == 1

    _until(lambda: _instances(server, name) == [], "scaled to zero again")
    stream = runtime.invoke_endpoint_with_response_stream(
        EndpointName=name, Body=json.dumps(IRIS), ContentType="application/json"
    )  # the streaming call starts it as well
    parts = b"".join(event["PayloadPart"]["Bytes"] for event in stream["Body"] if "PayloadPart" in event)
    assert json.loads(parts) == [0, 2]


def test_requests_past_max_concurrency_are_throttled(
    server: ServerProcess, clients: tuple[Any, Any, Any], model_data: str
) -> None:
    sm, s3, _ = clients
    runtime = boto_client("sagemaker-runtime", server.url, config=Config(retries={"total_max_attempts": 1}))
    name = _deploy(sm, s3, model_data, memory=1024, concurrency=1, code=SLOW)
    assert _invoke(runtime, name, IRIS) == [0, 2]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        slow = pool.submit(_invoke, runtime, name, "slow")
        _until(lambda: any(i["in_flight"] for i in _instances(server, name)), "serving the slow request")
        with pytest.raises(ClientError) as error:
            _invoke(runtime, name, IRIS)
        assert slow.result() == "slept"
    assert error.value.response["Error"]["Code"] == "ThrottlingException"
    assert error.value.response["ResponseMetadata"]["HTTPStatusCode"] == 429
    assert "MaxConcurrency of 1" in error.value.response["Error"]["Message"]
    assert _invoke(runtime, name, IRIS) == [0, 2]  # the slow one answered: room again


def test_the_model_server_has_the_variants_memory(
    server: ServerProcess, clients: tuple[Any, Any, Any], model_data: str
) -> None:
    sm, s3, runtime = clients
    name = _deploy(sm, s3, model_data, memory=1024, concurrency=1, code=SLOW)
    with pytest.raises(ClientError) as error:
        _invoke(runtime, name, "hog")
    assert error.value.response["Error"]["Code"] == "ModelError"
    assert "MemoryError" in error.value.response["OriginalMessage"]
    assert _invoke(runtime, name, IRIS) == [0, 2]  # the model server lives on


def test_each_request_is_billed_for_its_compute_time_at_its_memory(
    server: ServerProcess, clients: tuple[Any, Any, Any], model_data: str
) -> None:
    sm, s3, runtime = clients
    name = _deploy(sm, s3, model_data, memory=3072, concurrency=5)
    assert Decimal(_view(server, name)["sagemaker_cost_usd"]) == 0  # up, not billed: no request yet
    took = 0.0
    for _ in range(3):
        began = time.perf_counter()
        assert _invoke(runtime, name, IRIS) == [0, 2]
        took += time.perf_counter() - began
    view = _until(lambda: (v := _view(server, name))["instance_seconds"] > 0 and v, "billed")
    seconds = Decimal(str(view["instance_seconds"]))
    assert seconds <= Decimal(str(took)) + Decimal("0.003")  # the requests' time, not the endpoint's
    # SageMaker's on-demand price in us-east-1: USD 0.00002 per GB-second, at 3 GB.
    assert Decimal(view["sagemaker_cost_usd"]) == pytest.approx(seconds * 3 * Decimal("0.00002"), abs=2e-6)
    report = httpx.get(
        f"{server.url}/api/v1/costs", params={"group_by": ["resource", "instance_type"]}
    ).json()
    rows = [r for r in report["rows"] if r["resource"] == name]
    assert [r["instance_type"] for r in rows] == ["serverless:3072MB"]


def test_provisioned_concurrency_is_kept_warm_and_billed_while_provisioned(
    server: ServerProcess, clients: tuple[Any, Any, Any], model_data: str
) -> None:
    sm, s3, runtime = clients
    name = _deploy(sm, s3, model_data, memory=1024, concurrency=3, provisioned=2)
    [variant] = sm.describe_endpoint(EndpointName=name)["ProductionVariants"]
    expected = {"MemorySizeInMB": 1024, "MaxConcurrency": 3, "ProvisionedConcurrency": 2}
    assert variant["CurrentServerlessConfig"] == variant["DesiredServerlessConfig"] == expected
    # two copies come up with no request, each a model server of its own
    warm = _until(
        lambda: len(i := _instances(server, name)) == 2 and all(_answers(c["url"]) for c in i) and i, "warm"
    )
    assert len({c["url"] for c in warm}) == 2
    assert _invoke(runtime, name, IRIS) == [0, 2]  # no cold start: a warm copy answers
    answered = time.monotonic()
    # billed while provisioned, idle or not: idle past the site's 4 s since that request (an
    # on-demand variant would have scaled to zero by then), never scaled below it
    view = _until(
        lambda: (
            time.monotonic() - answered > 5 and (v := _view(server, name))["instance_seconds"] >= 10 and v
        ),
        "idle past the idle time, and billed for 5 s each",
    )
    assert sorted(c["id"] for c in _instances(server, name)) == sorted(c["id"] for c in warm)
    seconds = Decimal(str(view["instance_seconds"]))
    # SageMaker's serverless price in us-east-1, per GB-second, at 1 GB (module docstring of core/serverless)
    assert Decimal(view["sagemaker_cost_usd"]) == pytest.approx(
        seconds * Decimal("0.00002"), rel=Decimal("0.05")
    )
    sm.delete_endpoint(EndpointName=name)
    _until(lambda: not any(_answers(c["url"]) for c in warm), "stopped with its endpoint")


def test_serverless_config_errors_are_sagemakers(clients: tuple[Any, Any, Any], model_data: str) -> None:
    sm, s3, _ = clients
    model = _model(sm, s3, model_data)

    def refused(serverless: dict[str, Any], **variant: Any) -> str:
        with pytest.raises(ClientError) as error:
            sm.create_endpoint_config(
                EndpointConfigName=f"bad-{uuid.uuid4().hex[:6]}",
                ProductionVariants=[
                    {"VariantName": "v", "ModelName": model, "ServerlessConfig": serverless, **variant}
                ],
            )
        assert error.value.response["Error"]["Code"] == "ValidationException"
        return str(error.value.response["Error"]["Message"])

    too_much = refused({"MemorySizeInMB": 8192, "MaxConcurrency": 1})
    assert "'8192'" in too_much and "memorySizeInMB" in too_much and "6144" in too_much
    assert "greater than or equal to 1" not in too_much
    assert "200" in refused({"MemorySizeInMB": 1024, "MaxConcurrency": 201})
    off_step = refused({"MemorySizeInMB": 1500, "MaxConcurrency": 1})
    assert "'1500'" in off_step and "MemorySizeInMB" in off_step and "1024, 2048" in off_step
    assert "InstanceType" in refused(
        {"MemorySizeInMB": 1024, "MaxConcurrency": 1}, InstanceType="ml.m5.large"
    )
    past = refused({"MemorySizeInMB": 1024, "MaxConcurrency": 2, "ProvisionedConcurrency": 3})
    assert "ProvisionedConcurrency" in past and "MaxConcurrency (2)" in past and "got 3" in past


def test_a_serverless_variant_has_no_instance_count_to_change_or_scale(
    clients: tuple[Any, Any, Any], model_data: str
) -> None:
    sm, s3, _ = clients
    name = _deploy(sm, s3, model_data, memory=1024, concurrency=1)
    with pytest.raises(ClientError) as error:
        sm.update_endpoint_weights_and_capacities(
            EndpointName=name,
            DesiredWeightsAndCapacities=[{"VariantName": "AllTraffic", "DesiredInstanceCount": 2}],
        )
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "serverless" in error.value.response["Error"]["Message"]
    scaling = boto_client("application-autoscaling", sm.meta.endpoint_url)
    with pytest.raises(ClientError) as error:
        scaling.register_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId=f"endpoint/{name}/variant/AllTraffic",
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            MinCapacity=1,
            MaxCapacity=2,
        )
    assert error.value.response["Error"]["Code"] == "ValidationException"
    assert "serverless" in error.value.response["Error"]["Message"]


def test_an_endpoint_updated_to_a_serverless_config_scales_to_zero(
    server: ServerProcess, clients: tuple[Any, Any, Any], model_data: str
) -> None:
    sm, s3, runtime = clients
    name = _model(sm, s3, model_data)
    variant = {"VariantName": "AllTraffic", "ModelName": name}
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-instances",
        ProductionVariants=[{**variant, "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}],
    )
    sm.create_endpoint_config(
        EndpointConfigName=f"{name}-serverless",
        ProductionVariants=[{**variant, "ServerlessConfig": {"MemorySizeInMB": 1024, "MaxConcurrency": 1}}],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=f"{name}-instances")
    _until(lambda: sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService", "InService", 300)
    [instance] = _instances(server, name)
    sm.update_endpoint(EndpointName=name, EndpointConfigName=f"{name}-serverless")
    endpoint = _until(
        lambda: (e := sm.describe_endpoint(EndpointName=name))["EndpointStatus"] != "Updating" and e,
        "updated",
        300,
    )
    assert endpoint["EndpointConfigName"] == f"{name}-serverless", endpoint.get("FailureReason")
    [serving] = endpoint["ProductionVariants"]
    assert serving["CurrentServerlessConfig"] == {"MemorySizeInMB": 1024, "MaxConcurrency": 1}
    _until(lambda: not _answers(instance["url"]), "the instance retired")
    assert _instances(server, name) == []
    assert _invoke(runtime, name, IRIS) == [0, 2]
