"""Models, endpoint configs, endpoints and InvokeEndpoint through boto3: a scikit-learn model trained
by a training job, served by the default handlers and by an inference script; routing by weight and
TargetVariant; errors; a killed model server replaced; delete."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

import shipyard
from shipyard.server import ServerProcess
from tests._support import boto_client, tgz

ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
BUCKET = "endpoint-tests"
IRIS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3]]

TRAIN = """
import joblib, os
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
x, y = load_iris(return_X_y=True)
model = LogisticRegression(max_iter=500).fit(x, y)
joblib.dump(model, os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
"""

INFERENCE = """
import json, os
import joblib

def model_fn(model_dir, context=None):
    return {"model": joblib.load(os.path.join(model_dir, "model.joblib")), "loaded_from": model_dir}

def input_fn(body, content_type, context):
    if content_type != "application/json":
        raise ValueError(f"only JSON here, not {content_type}")
    if context.custom_attributes:  # SageMaker's context: the request's headers, and the answer's
        context.set_response_header(0, "X-Amzn-SageMaker-Custom-Attributes", context.custom_attributes.upper())
    return json.loads(body)["rows"]

def predict_fn(rows, model):
    if rows == "boom":
        raise RuntimeError("the model cannot take 'boom'")
    return model["model"].predict_proba(rows).tolist(), model["loaded_from"]

def output_fn(prediction, accept):
    probabilities, where = prediction
    return json.dumps({"probabilities": probabilities, "model_dir": where}), "application/vnd.iris+json"
"""

TRANSFORM = """
import joblib, os

def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))

def transform_fn(model, body, content_type, accept):
    rows = [[float(v) for v in line.split(",")] for line in body.decode().split("\\n") if line]
    return "".join(f"class={c}\\n" for c in model.predict(rows)), "text/plain"
"""


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("endpoints") / "data") as server:
        yield server


@pytest.fixture(scope="module")
def clients(server: ServerProcess) -> tuple[Any, Any, Any]:
    s3 = boto_client("s3", server.url)
    s3.create_bucket(Bucket=BUCKET)
    return boto_client("sagemaker", server.url), s3, boto_client("sagemaker-runtime", server.url)


@pytest.fixture(scope="module")
def model_data(clients: tuple[Any, Any, Any]) -> str:
    return train_iris(clients[0], clients[1])


def train_iris(sm: Any, s3: Any, name: str = "iris") -> str:
    """A scikit-learn model trained by a training job: the URI of its model.tar.gz."""
    s3.put_object(Bucket=BUCKET, Key="train/sourcedir.tar.gz", Body=tgz({"train.py": TRAIN}))
    sm.create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File"},
        HyperParameters={
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": f'"s3://{BUCKET}/train/sourcedir.tar.gz"',
        },
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/output"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 600},
    )
    deadline = time.monotonic() + 600
    while (job := sm.describe_training_job(TrainingJobName=name))["TrainingJobStatus"] == "InProgress":
        assert time.monotonic() < deadline
        time.sleep(0.1)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    return str(job["ModelArtifacts"]["S3ModelArtifacts"])


def _deploy(
    sm: Any,
    s3: Any,
    model_data: str,
    *,
    code: dict[str, str] | None = None,
    variants: list[tuple[str, float, int]] = (("AllTraffic", 1.0, 1),),  # type: ignore[assignment]
) -> str:
    """A model (with an inference script when ``code`` is given), a config and an endpoint."""
    name = f"ep-{uuid.uuid4().hex[:8]}"
    environment = {}
    if code:
        key = f"code/{name}/sourcedir.tar.gz"
        s3.put_object(Bucket=BUCKET, Key=key, Body=tgz(code))
        environment = {
            "SAGEMAKER_PROGRAM": "inference.py",
            "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{BUCKET}/{key}",
        }
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": SKLEARN_IMAGE, "ModelDataUrl": model_data, "Environment": environment},
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {
                "VariantName": variant,
                "ModelName": name,
                "InitialInstanceCount": count,
                "InstanceType": "ml.m5.large",
                "InitialVariantWeight": weight,
            }
            for variant, weight, count in variants
        ],
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    return name


def _wait(sm: Any, name: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (endpoint := sm.describe_endpoint(EndpointName=name))["EndpointStatus"] == "Creating":
        assert time.monotonic() < deadline, f"{name} still Creating"
        time.sleep(0.05)
    return endpoint  # type: ignore[no-any-return]


def test_default_handlers_serve_a_trained_model(clients: tuple[Any, Any, Any], model_data: str) -> None:
    import numpy as np

    sm, s3, runtime = clients
    name = _deploy(sm, s3, model_data)
    endpoint = _wait(sm, name)
    assert endpoint["EndpointStatus"] == "InService", endpoint.get("FailureReason")
    [variant] = endpoint["ProductionVariants"]
    assert (variant["VariantName"], variant["CurrentInstanceCount"], variant["CurrentWeight"]) == (
        "AllTraffic",
        1,
        1.0,
    )
    answer = runtime.invoke_endpoint(EndpointName=name, Body=json.dumps(IRIS), ContentType="application/json")
    assert json.loads(answer["Body"].read()) == [0, 2]
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    assert answer["ContentType"] == "application/json"
    csv = runtime.invoke_endpoint(
        EndpointName=name, Body="5.1,3.5,1.4,0.2\n", ContentType="text/csv", Accept="text/csv"
    )
    assert (csv["Body"].read(), csv["ContentType"]) == (b"0\n", "text/csv")
    buffer = io.BytesIO()
    np.save(buffer, np.array(IRIS), allow_pickle=False)
    npy = runtime.invoke_endpoint(
        EndpointName=name, Body=buffer.getvalue(), ContentType="application/x-npy", Accept="application/x-npy"
    )
    assert np.load(io.BytesIO(npy["Body"].read()), allow_pickle=False).tolist() == [0, 2]
    with pytest.raises(ClientError) as error:
        runtime.invoke_endpoint(EndpointName=name, Body=b"x", ContentType="text/plain")
    assert error.value.response["Error"]["Code"] == "ModelError"
    assert error.value.response["OriginalStatusCode"] == 415
    assert name in [e["EndpointName"] for e in sm.list_endpoints(NameContains=name)["Endpoints"]]
    assert sm.list_models(NameContains=name)["Models"][0]["ModelName"] == name
    config = sm.describe_endpoint_config(EndpointConfigName=name)
    assert config["ProductionVariants"][0]["ModelName"] == name


def test_inference_script_handlers(clients: tuple[Any, Any, Any], model_data: str) -> None:
    sm, s3, runtime = clients
    name = _deploy(sm, s3, model_data, code={"inference.py": INFERENCE})
    assert _wait(sm, name)["EndpointStatus"] == "InService"
    answer = runtime.invoke_endpoint(
        EndpointName=name,
        Body=json.dumps({"rows": IRIS}),
        ContentType="application/json",
        CustomAttributes="trace=7",
    )
    assert answer["ContentType"] == "application/vnd.iris+json"
    assert answer["CustomAttributes"] == "TRACE=7"
    result = json.loads(answer["Body"].read())
    assert result["model_dir"] == "/opt/ml/model"  # SageMaker's layout, in the sandbox
    assert [max(range(3), key=row.__getitem__) for row in result["probabilities"]] == [0, 2]
    with pytest.raises(ClientError) as error:
        runtime.invoke_endpoint(
            EndpointName=name, Body=json.dumps({"rows": "boom"}), ContentType="application/json"
        )
    response = error.value.response
    assert response["Error"]["Code"] == "ModelError" and response["OriginalStatusCode"] == 500
    assert "the model cannot take 'boom'" in response["OriginalMessage"]
    # An unsigned call (curl's, a load generator's) is answered as the SDK's signed one is.
    url = f"{sm.meta.endpoint_url}/endpoints/{name}/invocations"
    plain = httpx.post(
        url,
        content=json.dumps({"rows": IRIS}),
        headers={"Content-Type": "application/json", "X-Amzn-SageMaker-Custom-Attributes": "trace=7"},
    )
    assert plain.status_code == 200 and json.loads(plain.content) == result
    assert plain.headers["content-type"] == "application/vnd.iris+json"
    assert plain.headers["x-amzn-sagemaker-custom-attributes"] == "TRACE=7"
    assert plain.headers["x-amzn-invoked-production-variant"] == "AllTraffic"
    refused = httpx.post(
        url, content=json.dumps({"rows": "boom"}), headers={"Content-Type": "application/json"}
    )
    assert refused.status_code == 424 and refused.headers["x-amzn-errortype"] == "ModelError"
    assert refused.json()["OriginalStatusCode"] == 500
    missing = httpx.post(f"{sm.meta.endpoint_url}/endpoints/no-such-endpoint/invocations", content=b"[]")
    assert missing.status_code == 400 and "no-such-endpoint" in missing.json()["message"]
    logs = boto_client("logs", sm.meta.endpoint_url)
    deadline = time.monotonic() + 10
    while True:  # the traceback is in the endpoint's log
        events = logs.filter_log_events(logGroupName=f"/aws/sagemaker/Endpoints/{name}")["events"]
        if any("RuntimeError: the model cannot take 'boom'" in e["message"] for e in events):
            break
        assert time.monotonic() < deadline, [e["message"] for e in events]
        time.sleep(0.05)

    other = _deploy(sm, s3, model_data, code={"inference.py": TRANSFORM})
    assert _wait(sm, other)["EndpointStatus"] == "InService"
    answer = runtime.invoke_endpoint(
        EndpointName=other, Body="5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n", ContentType="text/csv"
    )
    assert (answer["Body"].read(), answer["ContentType"]) == (b"class=0\nclass=2\n", "text/plain")


def test_a_model_that_cannot_load_fails_its_endpoint_with_the_reason(
    clients: tuple[Any, Any, Any], model_data: str
) -> None:
    sm, s3, _ = clients
    broken = "def model_fn(model_dir):\n    raise ValueError('no weights for this model')\n"
    name = _deploy(sm, s3, model_data, code={"inference.py": broken})
    endpoint = _wait(sm, name)
    assert endpoint["EndpointStatus"] == "Failed"
    assert "ValueError: no weights for this model" in endpoint["FailureReason"]


def test_variants_split_traffic_by_weight_and_target_variant_wins(
    clients: tuple[Any, Any, Any], model_data: str
) -> None:
    sm, s3, runtime = clients
    name = _deploy(sm, s3, model_data, variants=[("Blue", 7.0, 1), ("Green", 3.0, 1)])
    assert _wait(sm, name)["EndpointStatus"] == "InService"
    body = json.dumps(IRIS[:1])
    counts = Counter(
        runtime.invoke_endpoint(EndpointName=name, Body=body, ContentType="application/json")[
            "InvokedProductionVariant"
        ]
        for _ in range(400)
    )
    assert set(counts) == {"Blue", "Green"}
    assert 0.6 < counts["Blue"] / 400 < 0.8, counts  # 70 % within four standard deviations
    targeted = {
        runtime.invoke_endpoint(
            EndpointName=name, Body=body, ContentType="application/json", TargetVariant="Green"
        )["InvokedProductionVariant"]
        for _ in range(20)
    }
    assert targeted == {"Green"}
    import httpx

    for variant, expected in (("Blue", counts["Blue"]), ("Green", counts["Green"] + 20)):
        metrics = httpx.get(
            f"{sm.meta.endpoint_url}/api/v1/endpoints/{name}/metrics", params={"variant": variant}
        ).json()["metrics"]
        assert sum(p["Sum"] for p in metrics["Invocations"]) == expected
        assert sum(p["Sum"] for p in metrics["Invocation5XXErrors"]) == 0
        assert sum(p["SampleCount"] for p in metrics["ModelLatency"]) == expected
        assert all(0 < p["Minimum"] <= p["Average"] <= p["Maximum"] for p in metrics["OverheadLatency"])
    # The same through CloudWatch, as the SDK's and the console's clients read it.
    import datetime as dt

    cloudwatch = boto_client("cloudwatch", sm.meta.endpoint_url)
    now = dt.datetime.now(dt.UTC)
    answer = cloudwatch.get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName="Invocations",
        Dimensions=[{"Name": "EndpointName", "Value": name}, {"Name": "VariantName", "Value": "Blue"}],
        StartTime=now - dt.timedelta(minutes=10),
        EndTime=now + dt.timedelta(minutes=1),
        Period=60,
        Statistics=["Sum", "SampleCount"],
    )
    assert sum(p["Sum"] for p in answer["Datapoints"]) == counts["Blue"]
    assert all(isinstance(p["Timestamp"], dt.datetime) for p in answer["Datapoints"])
    latency = cloudwatch.get_metric_statistics(
        Namespace="AWS/SageMaker",
        MetricName="ModelLatency",
        Dimensions=[{"Name": "EndpointName", "Value": name}],
        StartTime=now - dt.timedelta(minutes=10),
        EndTime=now + dt.timedelta(minutes=1),
        Period=600,
        Statistics=["Average", "Maximum"],
    )["Datapoints"]
    assert latency and all(p["Unit"] == "Microseconds" and 0 < p["Average"] <= p["Maximum"] for p in latency)
    with pytest.raises(ClientError, match="multiple of 60"):
        cloudwatch.get_metric_statistics(
            Namespace="AWS/SageMaker",
            MetricName="Invocations",
            StartTime=now - dt.timedelta(minutes=10),
            EndTime=now,
            Period=61,
            Statistics=["Sum"],
        )
    with pytest.raises(ClientError, match="'Purple' is not a production variant"):
        runtime.invoke_endpoint(
            EndpointName=name, Body=body, ContentType="application/json", TargetVariant="Purple"
        )


def _model_server_pids(data_dir: Path, endpoint: str) -> dict[str, list[int]]:
    """Instance id → the pids of its model server (bwrap and the Python inside)."""
    found: dict[str, list[int]] = {}
    for cmdline in Path("/proc").glob("[0-9]*/cmdline"):
        with contextlib.suppress(OSError):
            args = cmdline.read_bytes().split(b"\0")
            for arg in args:
                text = arg.decode(errors="replace")
                if text.endswith("model_server.py") and f"/endpoints/{endpoint}/" in text:
                    found.setdefault(Path(text).parent.name, []).append(int(cmdline.parent.name))
    return found


def test_a_killed_model_server_is_replaced_and_requests_keep_succeeding(
    clients: tuple[Any, Any, Any], model_data: str, server: ServerProcess
) -> None:
    sm, s3, runtime = clients
    name = _deploy(sm, s3, model_data, variants=[("AllTraffic", 1.0, 2)])
    assert _wait(sm, name)["EndpointStatus"] == "InService"
    before = _model_server_pids(server.data_dir, name)
    assert len(before) == 2
    victim = sorted(before)[0]
    for pid in before[victim]:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    body = json.dumps(IRIS[:1])
    for _ in range(50):  # the other instance answers meanwhile
        assert (
            runtime.invoke_endpoint(EndpointName=name, Body=body, ContentType="application/json")[
                "Body"
            ].read()
            == b"[0]"
        )
    deadline = time.monotonic() + 60
    while True:
        after = _model_server_pids(server.data_dir, name)
        endpoint = sm.describe_endpoint(EndpointName=name)
        if endpoint["ProductionVariants"][0]["CurrentInstanceCount"] == 2 and victim in after:
            break
        assert endpoint["EndpointStatus"] == "InService"
        assert time.monotonic() < deadline, "the killed model server was not replaced"
        time.sleep(0.1)
    assert not set(after[victim]) & set(before[victim])  # the same instance, a new model server


def test_delete_stops_the_model_servers_and_forgets_the_endpoint(
    clients: tuple[Any, Any, Any], model_data: str, server: ServerProcess
) -> None:
    sm, s3, runtime = clients
    name = _deploy(sm, s3, model_data)
    assert _wait(sm, name)["EndpointStatus"] == "InService"
    assert _model_server_pids(server.data_dir, name)
    sm.delete_endpoint(EndpointName=name)
    assert _model_server_pids(server.data_dir, name) == {}
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sm.describe_endpoint(EndpointName=name)
    with pytest.raises(ClientError) as error:
        runtime.invoke_endpoint(EndpointName=name, Body=b"[]", ContentType="application/json")
    assert error.value.response["Error"]["Code"] == "ValidationError"
    assert "not found" in error.value.response["Error"]["Message"]
    sm.delete_endpoint_config(EndpointConfigName=name)
    sm.delete_model(ModelName=name)
    assert sm.list_models(NameContains=name)["Models"] == []


def test_bad_hosting_requests_name_the_problem(clients: tuple[Any, Any, Any], model_data: str) -> None:
    sm, _, runtime = clients
    with pytest.raises(ClientError, match="Could not find model 'nope'"):
        sm.create_endpoint_config(
            EndpointConfigName="bad-config",
            ProductionVariants=[
                {
                    "VariantName": "A",
                    "ModelName": "nope",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                }
            ],
        )
    with pytest.raises(ClientError, match="Unknown image"):
        sm.create_model(
            ModelName="bad-image", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": "my/own:latest"}
        )
    sm.create_model(
        ModelName="twice",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": SKLEARN_IMAGE, "ModelDataUrl": model_data},
    )
    with pytest.raises(ClientError, match="Cannot create already existing model"):
        sm.create_model(ModelName="twice", ExecutionRoleArn=ROLE, PrimaryContainer={"Image": SKLEARN_IMAGE})
    with pytest.raises(ClientError, match="Could not find endpoint configuration"):
        sm.create_endpoint(EndpointName="no-config", EndpointConfigName="missing")
    with pytest.raises(ClientError) as error:
        runtime.invoke_endpoint(
            EndpointName="nowhere", Body=b"x" * (6 * 1024 * 1024 + 1), ContentType="text/csv"
        )
    assert error.value.response["Error"]["Code"] == "ValidationError"
    assert "larger than the limit" in error.value.response["Error"]["Message"]


MARKED = """
def model_fn(model_dir):
    return "second"

def transform_fn(model, body, content_type, accept):
    return f'["{model}"]', "application/json"
"""


def test_update_endpoint_swaps_models_without_failing_a_request(
    clients: tuple[Any, Any, Any], model_data: str, server: ServerProcess
) -> None:
    import threading

    sm, s3, _ = clients
    name = _deploy(sm, s3, model_data)
    assert _wait(sm, name)["EndpointStatus"] == "InService"
    first_servers = set(_model_server_pids(server.data_dir, name))
    second = _deploy(sm, s3, model_data, code={"inference.py": MARKED})  # its model and config
    answers: list[bytes] = []
    failures: list[Exception] = []
    done = threading.Event()

    def load() -> None:
        client = boto_client("sagemaker-runtime", sm.meta.endpoint_url)
        while not done.is_set():
            try:
                body = client.invoke_endpoint(
                    EndpointName=name, Body=json.dumps(IRIS[:1]), ContentType="application/json"
                )
                answers.append(body["Body"].read())
            except Exception as exc:  # every failure counts
                failures.append(exc)

    threads = [threading.Thread(target=load) for _ in range(2)]
    for thread in threads:
        thread.start()
    try:
        while len(answers) < 20:
            time.sleep(0.01)
        sm.update_endpoint(EndpointName=name, EndpointConfigName=second)
        assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "Updating"
        endpoint = _wait_status(sm, name, "InService")
        assert endpoint["EndpointConfigName"] == second
        count = len(answers)
        while len(answers) < count + 20:
            time.sleep(0.01)
    finally:
        done.set()
        for thread in threads:
            thread.join()
    assert failures == []
    assert answers[0] == b"[0]" and set(answers[-10:]) == {b'["second"]'}
    assert set(answers) == {b"[0]", b'["second"]'}
    # the old servers stop once their in-flight requests are answered, just after the switch
    deadline = time.monotonic() + 60
    while first_servers & set(_model_server_pids(server.data_dir, name)):
        assert time.monotonic() < deadline, "the old model servers still run"
        time.sleep(0.05)


def _wait_status(sm: Any, name: str, status: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (endpoint := sm.describe_endpoint(EndpointName=name))["EndpointStatus"] != status:
        assert endpoint["EndpointStatus"] in ("Creating", "Updating"), endpoint
        assert time.monotonic() < deadline, f"{name} never {status}"
        time.sleep(0.05)
    return endpoint  # type: ignore[no-any-return]


def test_weights_and_capacities_change_in_place(clients: tuple[Any, Any, Any], model_data: str) -> None:
    sm, s3, runtime = clients
    name = _deploy(sm, s3, model_data, variants=[("Blue", 1.0, 1), ("Green", 1.0, 1)])
    assert _wait(sm, name)["EndpointStatus"] == "InService"
    sm.update_endpoint_weights_and_capacities(
        EndpointName=name,
        DesiredWeightsAndCapacities=[
            {"VariantName": "Blue", "DesiredWeight": 0.0},
            {"VariantName": "Green", "DesiredInstanceCount": 2},
        ],
    )
    body = json.dumps(IRIS[:1])
    served = {
        runtime.invoke_endpoint(EndpointName=name, Body=body, ContentType="application/json")[
            "InvokedProductionVariant"
        ]
        for _ in range(30)
    }
    assert served == {"Green"}  # weight 0: no traffic, at once
    endpoint = _wait_status(sm, name, "InService")
    variants = {v["VariantName"]: v for v in endpoint["ProductionVariants"]}
    assert (variants["Green"]["CurrentInstanceCount"], variants["Green"]["DesiredInstanceCount"]) == (2, 2)
    assert (variants["Blue"]["CurrentWeight"], variants["Blue"]["CurrentInstanceCount"]) == (0.0, 1)
    with pytest.raises(ClientError, match="'Red' is not a production variant"):
        sm.update_endpoint_weights_and_capacities(
            EndpointName=name, DesiredWeightsAndCapacities=[{"VariantName": "Red", "DesiredWeight": 1.0}]
        )
    sm.update_endpoint_weights_and_capacities(
        EndpointName=name, DesiredWeightsAndCapacities=[{"VariantName": "Green", "DesiredInstanceCount": 1}]
    )
    endpoint = _wait_status(sm, name, "InService")
    assert {v["VariantName"]: v["CurrentInstanceCount"] for v in endpoint["ProductionVariants"]} == {
        "Blue": 1,
        "Green": 1,
    }


def test_a_restarted_server_serves_its_endpoints_again_and_bills_only_serving_time(tmp_path: Path) -> None:
    from decimal import Decimal

    import httpx

    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir).start()
    try:
        sm, s3, runtime = (boto_client(s, server.url) for s in ("sagemaker", "s3", "sagemaker-runtime"))
        s3.create_bucket(Bucket=BUCKET)
        name = _deploy(sm, s3, train_iris(sm, s3))
        assert _wait(sm, name)["EndpointStatus"] == "InService"
        in_service = time.time()
        before = httpx.get(f"{server.url}/api/v1/endpoints/{name}").json()
        time.sleep(0.3)
        during = httpx.get(f"{server.url}/api/v1/endpoints/{name}").json()
        assert during["instance_seconds"] > before["instance_seconds"] > 0  # accrues while it serves
        price = Decimal("0.115")  # ml.m5.large hosting, per hour
        expected = price * Decimal(str(during["instance_seconds"])) / 3600
        assert abs(Decimal(during["cost_usd"]) - expected) <= Decimal("0.000002")

        server.kill()  # a crash: its model servers go with it (the kernel ends them as it dies)
        crashed = time.time()
        gone = time.monotonic() + 30
        while _model_server_pids(data_dir, name):
            assert time.monotonic() < gone, (
                f"model servers outlived their server: {_model_server_pids(data_dir, name)}"
            )
            time.sleep(0.05)
        time.sleep(1.0)  # down for a second at least
        restarted = time.time()
        server = ServerProcess(data_dir, port=server.port).start()
        sm, runtime = boto_client("sagemaker", server.url), boto_client("sagemaker-runtime", server.url)
        deadline = time.monotonic() + 120
        while (
            sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0].get("CurrentInstanceCount") != 1
        ):
            assert time.monotonic() < deadline, "the endpoint did not come back"
            time.sleep(0.1)
        assert sm.describe_endpoint(EndpointName=name)["EndpointStatus"] == "InService"
        answer = runtime.invoke_endpoint(
            EndpointName=name, Body=json.dumps(IRIS), ContentType="application/json"
        )
        assert json.loads(answer["Body"].read()) == [0, 2]
        after = httpx.get(f"{server.url}/api/v1/endpoints/{name}").json()
        # Billed: serving before the crash (at most until it) and since the restart; not the downtime.
        assert after["instance_seconds"] <= (crashed - in_service) + (time.time() - restarted) + 0.5
    finally:
        server.stop()


STREAMING = """
import json, threading

def model_fn(model_dir, context=None):
    return {"released": threading.Event()}

def input_fn(body, content_type, context=None):
    return json.loads(body)

def predict_fn(request, model):
    if "release" in request:  # another request lets a waiting stream go on
        model["released"].set()
        return "released"
    if request.get("fail_at_once"):
        raise RuntimeError("no tokens for you")
    return _tokens(request, model)

def _tokens(request, model):
    for i in range(request["n"]):
        if i == request.get("fail_at"):
            raise RuntimeError(f"token {i} would not come")
        if i == request.get("wait_at"):  # the client has part i-1 only if it was sent on at once
            yield "released " if model["released"].wait(60) else "never released "
        yield f"token-{i} "

def output_fn(prediction, accept):
    return prediction, "text/plain; charset=utf-8"
"""


def _stream(runtime: Any, name: str, request: dict[str, Any]) -> Iterator[bytes]:
    answer = runtime.invoke_endpoint_with_response_stream(
        EndpointName=name, Body=json.dumps(request), ContentType="application/json"
    )
    assert answer["ContentType"] == "text/plain; charset=utf-8"
    assert answer["InvokedProductionVariant"] == "AllTraffic"
    for event in answer["Body"]:
        yield event["PayloadPart"]["Bytes"]


def _sagemaker_session(server: ServerProcess) -> Any:
    import boto3
    import sagemaker

    return sagemaker.Session(
        boto_session=boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"),
        sagemaker_client=boto_client("sagemaker", server.url),
        sagemaker_runtime_client=boto_client("sagemaker-runtime", server.url),
        default_bucket=BUCKET,
    )


def test_a_streaming_handler_streams_its_parts_as_it_makes_them(
    server: ServerProcess, clients: tuple[Any, Any, Any], model_data: str
) -> None:
    from botocore.exceptions import EventStreamError
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import JSONSerializer

    sm, s3, runtime = clients
    name = _deploy(sm, s3, model_data, code={"inference.py": STREAMING})
    assert _wait(sm, name)["EndpointStatus"] == "InService"
    assert list(_stream(runtime, name, {"n": 4})) == [b"token-0 ", b"token-1 ", b"token-2 ", b"token-3 "]
    # InvokeEndpoint joins the parts
    joined = runtime.invoke_endpoint(
        EndpointName=name, Body=json.dumps({"n": 3}), ContentType="application/json"
    )
    assert joined["Body"].read() == b"token-0 token-1 token-2 "

    # Each part is sent on as it is made: the handler waits after its first part until another
    # request releases it, which the client sends only once it holds that first part.
    parts = _stream(runtime, name, {"n": 2, "wait_at": 1})
    assert next(parts) == b"token-0 "
    released = runtime.invoke_endpoint(
        EndpointName=name, Body=json.dumps({"release": True}), ContentType="application/json"
    )
    assert released["Body"].read() == b"released"
    assert list(parts) == [b"released ", b"token-1 "]

    # A handler that fails before its first part is a ModelError, as InvokeEndpoint's.
    with pytest.raises(ClientError) as error:
        list(_stream(runtime, name, {"fail_at_once": True}))
    assert error.value.response["Error"]["Code"] == "ModelError"
    assert "no tokens for you" in error.value.response["Error"]["Message"]

    # One that fails midway: its parts so far, then ModelStreamError with its message.
    got: list[bytes] = []
    with pytest.raises(EventStreamError) as broken:
        for part in _stream(runtime, name, {"n": 5, "fail_at": 2}):
            got.append(part)
    assert got == [b"token-0 ", b"token-1 "]
    assert broken.value.response["Error"]["Code"] == "ModelStreamError"
    assert "token 2 would not come" in broken.value.response["Error"]["Message"]

    # The model server is still there for the next request, from Shipyard's SDK and from the
    # sagemaker SDK's Predictor.predict_stream; an unknown endpoint names itself.
    endpoint = shipyard.Endpoint(name, shipyard.connect(server.url))
    assert list(endpoint.predict_stream({"n": 2})) == [b"token-0 ", b"token-1 "]
    predictor = Predictor(name, sagemaker_session=_sagemaker_session(server), serializer=JSONSerializer())
    assert list(predictor.predict_stream({"n": 3})) == [b"token-0 ", b"token-1 ", b"token-2 "]
    with pytest.raises(ClientError) as unknown:
        runtime.invoke_endpoint_with_response_stream(EndpointName="no-such-endpoint", Body=b"{}")
    assert unknown.value.response["Error"]["Code"] == "ValidationError"
    assert "no-such-endpoint" in unknown.value.response["Error"]["Message"]
    sm.delete_endpoint(EndpointName=name)
