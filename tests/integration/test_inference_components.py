"""Inference components through boto3 on a real server with real model servers: an endpoint whose
config names no model comes up InService with nothing running; two components with different
models on it each answer with their own model; a component's copies scale up and down; invoking
without a component, or an unknown one, is refused as SageMaker refuses it; capacity errors; tags;
delete (the endpoint only once its components are gone)."""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from tests._support import boto_client, tgz

ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
BUCKET = "component-tests"
ENDPOINT = "shared"

HANDLER = """
import json, os, uuid

def model_fn(model_dir):
    with open(os.path.join(model_dir, "model.json")) as f:
        model = json.load(f)
    return {**model, "copy": uuid.uuid4().hex}  # which copy answered (each is a process of its own)

def input_fn(body, content_type):
    return json.loads(body)

def predict_fn(rows, model):
    if rows == "boom":
        raise ValueError("this model takes rows, not 'boom'")
    return {"model": model["name"], "scores": [sum(r) * model["scale"] for r in rows], "copy": model["copy"]}

def output_fn(prediction, accept):
    return json.dumps(prediction), "application/json"
"""


def _until(what: str, check: Callable[[], Any], timeout: float = 300) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := check()):
        assert time.monotonic() < deadline, f"still waiting for {what}"
        time.sleep(0.1)
    return found


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("components") / "data") as server:
        yield server


@pytest.fixture(scope="module")
def clients(server: ServerProcess) -> tuple[Any, Any]:
    s3 = boto_client("s3", server.url)
    s3.create_bucket(Bucket=BUCKET)
    for name, scale in (("alpha", 1), ("beta", 100)):
        archive = tgz(
            {"model.json": json.dumps({"name": name, "scale": scale}), "code/inference.py": HANDLER}
        )
        s3.put_object(Bucket=BUCKET, Key=f"{name}/model.tar.gz", Body=archive)
    return boto_client("sagemaker", server.url), boto_client("sagemaker-runtime", server.url)


@pytest.fixture(scope="module")
def endpoint(clients: tuple[Any, Any]) -> str:
    sm, _ = clients
    sm.create_endpoint_config(
        EndpointConfigName=ENDPOINT,
        ExecutionRoleArn=ROLE,
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "InstanceType": "ml.m5.large",  # 2 vCPUs, 8 GiB
                "InitialInstanceCount": 1,
                "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"},
                "ManagedInstanceScaling": {"Status": "DISABLED"},
            }
        ],
    )
    sm.create_endpoint(EndpointName=ENDPOINT, EndpointConfigName=ENDPOINT)
    _until("InService", lambda: sm.describe_endpoint(EndpointName=ENDPOINT)["EndpointStatus"] == "InService")
    return ENDPOINT


def _create(sm: Any, name: str, *, copies: int = 1, cpus: float = 0.5, **specification: Any) -> None:
    sm.create_inference_component(
        InferenceComponentName=name,
        EndpointName=ENDPOINT,
        VariantName="AllTraffic",
        Specification={
            **specification,
            "ComputeResourceRequirements": {"NumberOfCpuCoresRequired": cpus, "MinMemoryRequiredInMb": 512},
        },
        RuntimeConfig={"CopyCount": copies},
        Tags=[{"Key": "team", "Value": "search"}],
    )


def _settled(sm: Any, name: str) -> dict[str, Any]:
    def done() -> dict[str, Any] | None:
        found: dict[str, Any] = sm.describe_inference_component(InferenceComponentName=name)
        return None if found["InferenceComponentStatus"] in ("Creating", "Updating") else found

    return _until(f"{name} to settle", done)


def _invoke(runtime: Any, component: str, rows: list[list[float]]) -> dict[str, Any]:
    answer = runtime.invoke_endpoint(
        EndpointName=ENDPOINT,
        InferenceComponentName=component,
        ContentType="application/json",
        Body=json.dumps(rows),
    )
    result: dict[str, Any] = json.loads(answer["Body"].read())
    return result


def test_an_endpoint_for_components_is_in_service_and_refuses_a_request_naming_none(
    clients: tuple[Any, Any], endpoint: str
) -> None:
    sm, runtime = clients
    described = sm.describe_endpoint(EndpointName=endpoint)
    assert described["ProductionVariants"][0]["CurrentInstanceCount"] == 1
    assert sm.describe_endpoint_config(EndpointConfigName=endpoint)["ExecutionRoleArn"] == ROLE
    with pytest.raises(ClientError) as refused:
        runtime.invoke_endpoint(EndpointName=endpoint, ContentType="application/json", Body=b"[[1]]")
    assert refused.value.response["Error"]["Code"] == "ValidationError"
    assert "Inference Component Name header is required" in refused.value.response["Error"]["Message"]


def test_a_config_mixing_variants_with_and_without_a_model_is_refused(clients: tuple[Any, Any]) -> None:
    sm, _ = clients
    sm.create_model(
        ModelName="mixed-model",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": SKLEARN_IMAGE, "ModelDataUrl": f"s3://{BUCKET}/alpha/model.tar.gz"},
    )
    with pytest.raises(ClientError, match=r"ProductionVariants.1.ModelName is required"):
        sm.create_endpoint_config(
            EndpointConfigName="mixed",
            ExecutionRoleArn=ROLE,
            ProductionVariants=[
                {
                    "VariantName": "A",
                    "ModelName": "mixed-model",
                    "InstanceType": "ml.m5.large",
                    "InitialInstanceCount": 1,
                },
                {"VariantName": "B", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1},
            ],
        )


def test_two_components_answer_each_with_its_own_model_scale_and_delete(
    clients: tuple[Any, Any], endpoint: str
) -> None:
    sm, runtime = clients
    sm.create_model(
        ModelName="alpha",
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": SKLEARN_IMAGE,
            "ModelDataUrl": f"s3://{BUCKET}/alpha/model.tar.gz",
            "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
        },
    )
    _create(sm, "ic-alpha", ModelName="alpha")
    _create(  # a container of its own rather than a model
        sm,
        "ic-beta",
        Container={
            "Image": SKLEARN_IMAGE,
            "ArtifactUrl": f"s3://{BUCKET}/beta/model.tar.gz",
            "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
        },
    )
    alpha, beta = _settled(sm, "ic-alpha"), _settled(sm, "ic-beta")
    assert alpha["InferenceComponentStatus"] == "InService", alpha.get("FailureReason")
    assert beta["InferenceComponentStatus"] == "InService", beta.get("FailureReason")
    assert alpha["RuntimeConfig"]["DesiredCopyCount"] == alpha["RuntimeConfig"]["CurrentCopyCount"] == 1
    assert beta["Specification"]["Container"]["DeployedImage"]["SpecifiedImage"] == SKLEARN_IMAGE
    assert alpha["EndpointArn"].endswith(":endpoint/shared")

    assert _invoke(runtime, "ic-alpha", [[1, 2]])["model"] == "alpha"
    answer = _invoke(runtime, "ic-beta", [[1, 2]])
    assert (answer["model"], answer["scores"]) == ("beta", [300])

    # A model's error points at the copy's log stream, in the component's log group.
    with pytest.raises(ClientError) as failed:
        runtime.invoke_endpoint(
            EndpointName=ENDPOINT,
            InferenceComponentName="ic-beta",
            ContentType="application/json",
            Body=b'"boom"',
        )
    assert failed.value.response["Error"]["Code"] == "ModelError"
    message = failed.value.response["Error"]["Message"]
    assert "of log group /aws/sagemaker/InferenceComponents/ic-beta" in message, message
    stream = message.split("See the log stream ")[1].split(" ")[0]
    logs = boto_client("logs", runtime.meta.endpoint_url)
    group = "/aws/sagemaker/InferenceComponents/ic-beta"
    assert [s["logStreamName"] for s in logs.describe_log_streams(logGroupName=group)["logStreams"]] == [
        stream
    ]
    events = logs.get_log_events(logGroupName=group, logStreamName=stream, startFromHead=True)["events"]
    assert any("this model takes rows, not 'boom'" in e["message"] for e in events)

    with pytest.raises(ClientError) as unknown:
        _invoke(runtime, "ic-nobody", [[1]])
    assert "ic-nobody" in unknown.value.response["Error"]["Message"]

    # Streaming reaches the component too.
    streamed = runtime.invoke_endpoint_with_response_stream(
        EndpointName=ENDPOINT, InferenceComponentName="ic-beta", ContentType="application/json", Body=b"[[1]]"
    )
    parts = b"".join(e["PayloadPart"]["Bytes"] for e in streamed["Body"] if "PayloadPart" in e)
    assert json.loads(parts)["model"] == "beta"

    # Up to 2 copies: both answer (the idle copy takes the next request).
    sm.update_inference_component_runtime_config(
        InferenceComponentName="ic-alpha", DesiredRuntimeConfig={"CopyCount": 2}
    )
    scaled = _settled(sm, "ic-alpha")
    assert scaled["InferenceComponentStatus"] == "InService", scaled.get("FailureReason")
    assert scaled["RuntimeConfig"]["CurrentCopyCount"] == 2
    assert scaled["RuntimeConfig"]["PlacementStatus"] == [
        {"InstanceType": "ml.m5.large", "CurrentCopyCount": 2}
    ]
    copies = {_invoke(runtime, "ic-alpha", [[1]])["copy"] for _ in range(4)}
    assert len(copies) == 2

    # Past the instance's 2 vCPUs (2 x 0.5 alpha, 0.5 beta, 2 more asked): refused, the copies kept.
    sm.update_inference_component(InferenceComponentName="ic-alpha", RuntimeConfig={"CopyCount": 4})
    refused = _settled(sm, "ic-alpha")
    assert refused["InferenceComponentStatus"] == "InService"
    assert "CapacityError" in refused["FailureReason"]
    assert refused["RuntimeConfig"]["CurrentCopyCount"] == 2

    # Down to 1.
    sm.update_inference_component_runtime_config(
        InferenceComponentName="ic-alpha", DesiredRuntimeConfig={"CopyCount": 1}
    )
    assert _settled(sm, "ic-alpha")["RuntimeConfig"]["CurrentCopyCount"] == 1
    assert len({_invoke(runtime, "ic-alpha", [[1]])["copy"] for _ in range(3)}) == 1

    # Listing, filters and tags.
    listed = sm.list_inference_components(EndpointNameEquals=ENDPOINT, SortBy="Name", SortOrder="Ascending")
    assert [c["InferenceComponentName"] for c in listed["InferenceComponents"]] == ["ic-alpha", "ic-beta"]
    page = sm.list_inference_components(NameContains="ic-", MaxResults=1, SortBy="Name")
    assert [c["InferenceComponentName"] for c in page["InferenceComponents"]] == ["ic-beta"]
    assert page.get("NextToken")
    assert sm.list_inference_components(VariantNameEquals="Other")["InferenceComponents"] == []
    assert sm.list_tags(ResourceArn=alpha["InferenceComponentArn"])["Tags"] == [
        {"Key": "team", "Value": "search"}
    ]
    assert (
        alpha["InferenceComponentArn"]
        == "arn:aws:sagemaker:us-east-1:000000000000:inference-component/ic-alpha"
    )

    # The endpoint goes only once its components have.
    with pytest.raises(ClientError, match="has inference components: ic-alpha, ic-beta"):
        sm.delete_endpoint(EndpointName=ENDPOINT)
    for name in ("ic-alpha", "ic-beta"):
        sm.delete_inference_component(InferenceComponentName=name)
        with pytest.raises(ClientError, match="Could not find inference component"):
            sm.describe_inference_component(InferenceComponentName=name)
    with pytest.raises(ClientError, match="ic-alpha"):
        _invoke(runtime, "ic-alpha", [[1]])


def test_a_component_that_does_not_fit_fails_with_a_capacity_error(
    clients: tuple[Any, Any], endpoint: str
) -> None:
    sm, _ = clients
    name = f"huge-{uuid.uuid4().hex[:6]}"
    _create(
        sm,
        name,
        cpus=8,
        Container={"Image": SKLEARN_IMAGE, "ArtifactUrl": f"s3://{BUCKET}/beta/model.tar.gz"},
    )
    failed = _settled(sm, name)
    assert failed["InferenceComponentStatus"] == "Failed"
    assert failed["FailureReason"].startswith("CapacityError")
    assert "8 CPU cores" in failed["FailureReason"]
    sm.delete_inference_component(InferenceComponentName=name)


def test_a_users_components_are_invisible_and_uninvokable_to_another(tmp_path: Any) -> None:
    from tests.integration.test_tenancy import ROLE as LAB_ROLE
    from tests.integration.test_tenancy import Lab, _refused

    with ServerProcess(tmp_path / "data", env={"SHIPYARD_AUTH": "on"}) as server:
        lab = Lab(server)
        sm, runtime, s3 = (lab.client("alice", s) for s in ("sagemaker", "sagemaker-runtime", "s3"))
        s3.create_bucket(Bucket="alice-models")
        archive = tgz({"model.json": json.dumps({"name": "own", "scale": 1}), "code/inference.py": HANDLER})
        s3.put_object(Bucket="alice-models", Key="own/model.tar.gz", Body=archive)
        sm.create_endpoint_config(
            EndpointConfigName="alice-ep",
            ExecutionRoleArn=LAB_ROLE,
            ProductionVariants=[
                {"VariantName": "AllTraffic", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
            ],
        )
        sm.create_endpoint(EndpointName="alice-ep", EndpointConfigName="alice-ep")
        _until(
            "InService",
            lambda: sm.describe_endpoint(EndpointName="alice-ep")["EndpointStatus"] == "InService",
        )
        specification = {
            "Container": {
                "Image": SKLEARN_IMAGE,
                "ArtifactUrl": "s3://alice-models/own/model.tar.gz",
                "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
            },
            "ComputeResourceRequirements": {"NumberOfCpuCoresRequired": 0.5, "MinMemoryRequiredInMb": 512},
        }
        sm.create_inference_component(
            InferenceComponentName="alice-ic",
            EndpointName="alice-ep",
            VariantName="AllTraffic",
            Specification=specification,
            RuntimeConfig={"CopyCount": 1},
        )
        assert _settled(sm, "alice-ic")["InferenceComponentStatus"] == "InService"
        answer = runtime.invoke_endpoint(
            EndpointName="alice-ep",
            InferenceComponentName="alice-ic",
            ContentType="application/json",
            Body=b"[[1]]",
        )
        assert json.loads(answer["Body"].read())["model"] == "own"

        bob, bob_runtime = lab.client("bob", "sagemaker"), lab.client("bob", "sagemaker-runtime")
        arn = "arn:aws:sagemaker:us-east-1:000000000000:inference-component/alice-ic"
        _refused(
            lambda: bob.describe_inference_component(InferenceComponentName="alice-ic"),
            "sagemaker:DescribeInferenceComponent",
            arn,
        )
        assert bob.list_inference_components()["InferenceComponents"] == []
        _refused(
            lambda: bob_runtime.invoke_endpoint(
                EndpointName="alice-ep",
                InferenceComponentName="alice-ic",
                ContentType="application/json",
                Body=b"[[1]]",
            ),
            "sagemaker:InvokeEndpoint",
        )
        _refused(  # nor put a component of bob's on alice's endpoint
            lambda: bob.create_inference_component(
                InferenceComponentName="bob-ic",
                EndpointName="alice-ep",
                Specification=specification,
                RuntimeConfig={"CopyCount": 1},
            ),
            "sagemaker:CreateInferenceComponent",
        )
        sm.delete_inference_component(InferenceComponentName="alice-ic")


def test_a_restarted_server_brings_the_copies_back_and_bills_the_instances(tmp_path: Any) -> None:
    import httpx

    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir).start()
    try:
        sm, s3, runtime = (boto_client(s, server.url) for s in ("sagemaker", "s3", "sagemaker-runtime"))
        s3.create_bucket(Bucket=BUCKET)
        archive = tgz({"model.json": json.dumps({"name": "kept", "scale": 3}), "code/inference.py": HANDLER})
        s3.put_object(Bucket=BUCKET, Key="kept/model.tar.gz", Body=archive)
        sm.create_endpoint_config(
            EndpointConfigName="kept",
            ExecutionRoleArn=ROLE,
            ProductionVariants=[
                {"VariantName": "AllTraffic", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
            ],
        )
        sm.create_endpoint(EndpointName="kept", EndpointConfigName="kept")
        _until(
            "InService", lambda: sm.describe_endpoint(EndpointName="kept")["EndpointStatus"] == "InService"
        )
        sm.create_inference_component(
            InferenceComponentName="kept-ic",
            EndpointName="kept",
            VariantName="AllTraffic",
            Specification={
                "Container": {
                    "Image": SKLEARN_IMAGE,
                    "ArtifactUrl": f"s3://{BUCKET}/kept/model.tar.gz",
                    "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
                },
                "ComputeResourceRequirements": {
                    "NumberOfCpuCoresRequired": 0.5,
                    "MinMemoryRequiredInMb": 512,
                },
            },
            RuntimeConfig={"CopyCount": 2},
        )
        assert _settled(sm, "kept-ic")["RuntimeConfig"]["CurrentCopyCount"] == 2
        billed = httpx.get(f"{server.url}/api/v1/endpoints/kept").json()
        assert (
            billed["instance_seconds"] > 0 and float(billed["cost_usd"]) > 0
        )  # the instance, not the copies

        server.stop()
        server = ServerProcess(data_dir, port=server.port).start()
        sm, runtime = boto_client("sagemaker", server.url), boto_client("sagemaker-runtime", server.url)

        def back() -> bool:
            found = sm.describe_inference_component(InferenceComponentName="kept-ic")
            return bool(found["RuntimeConfig"]["CurrentCopyCount"] == 2)

        _until("the copies to come back", back)
        answer = runtime.invoke_endpoint(
            EndpointName="kept",
            InferenceComponentName="kept-ic",
            ContentType="application/json",
            Body=b"[[1, 1]]",
        )
        assert json.loads(answer["Body"].read())["scores"] == [6]
    finally:
        server.stop()


def test_application_auto_scaling_scales_a_components_copies_out_and_in(tmp_path: Any) -> None:
    env = {"SHIPYARD_AUTOSCALING_INTERVAL_SECONDS": "1", "SHIPYARD_AUTOSCALING_WINDOW_SECONDS": "4"}
    with ServerProcess(tmp_path / "data", env=env) as server:
        sm, s3, runtime = (boto_client(s, server.url) for s in ("sagemaker", "s3", "sagemaker-runtime"))
        scaling = boto_client("application-autoscaling", server.url)
        s3.create_bucket(Bucket=BUCKET)
        archive = tgz({"model.json": json.dumps({"name": "busy", "scale": 1}), "code/inference.py": HANDLER})
        s3.put_object(Bucket=BUCKET, Key="busy/model.tar.gz", Body=archive)
        sm.create_endpoint_config(
            EndpointConfigName="busy",
            ExecutionRoleArn=ROLE,
            ProductionVariants=[
                {"VariantName": "AllTraffic", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1}
            ],
        )
        sm.create_endpoint(EndpointName="busy", EndpointConfigName="busy")
        _until(
            "InService", lambda: sm.describe_endpoint(EndpointName="busy")["EndpointStatus"] == "InService"
        )
        sm.create_inference_component(
            InferenceComponentName="busy-ic",
            EndpointName="busy",
            VariantName="AllTraffic",
            Specification={
                "Container": {
                    "Image": SKLEARN_IMAGE,
                    "ArtifactUrl": f"s3://{BUCKET}/busy/model.tar.gz",
                    "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
                },
                "ComputeResourceRequirements": {
                    "NumberOfCpuCoresRequired": 0.5,
                    "MinMemoryRequiredInMb": 512,
                },
            },
            RuntimeConfig={"CopyCount": 1},
        )
        assert _settled(sm, "busy-ic")["InferenceComponentStatus"] == "InService"
        resource = {
            "ServiceNamespace": "sagemaker",
            "ResourceId": "inference-component/busy-ic",
            "ScalableDimension": "sagemaker:inference-component:DesiredCopyCount",
        }
        scaling.register_scalable_target(**resource, MinCapacity=1, MaxCapacity=2)
        scaling.put_scaling_policy(
            **resource,
            PolicyName="per-copy",
            PolicyType="TargetTrackingScaling",
            TargetTrackingScalingPolicyConfiguration={
                "TargetValue": 60.0,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerInferenceComponentInvocationsPerCopy"
                },
                "ScaleOutCooldown": 0,
                "ScaleInCooldown": 0,
            },
        )
        [policy] = scaling.describe_scaling_policies(
            ServiceNamespace="sagemaker", ResourceId=resource["ResourceId"]
        )["ScalingPolicies"]
        assert policy["PolicyName"] == "per-copy"

        def copies() -> int:
            found = sm.describe_inference_component(InferenceComponentName="busy-ic")["RuntimeConfig"]
            return int(found.get("CurrentCopyCount", 0))

        for _ in range(20):  # 20 in the 4 s window: 300 a minute on one copy, against a target of 60
            _invoke_on(runtime, "busy", "busy-ic")
        _until("a second copy", lambda: copies() == 2, timeout=60)
        _until("back to one copy without requests", lambda: copies() == 1, timeout=60)
        activities = scaling.describe_scaling_activities(
            ServiceNamespace="sagemaker", ResourceId=resource["ResourceId"]
        )
        descriptions = [a["Description"] for a in activities["ScalingActivities"]]
        assert (
            "Setting desired copy count to 2." in descriptions
            and "Setting desired copy count to 1." in descriptions
        )


def _invoke_on(runtime: Any, endpoint: str, component: str) -> None:
    runtime.invoke_endpoint(
        EndpointName=endpoint, InferenceComponentName=component, ContentType="application/json", Body=b"[[1]]"
    )["Body"].read()
