"""Inference components as the sagemaker SDK 2.x deploys them, unchanged: two models on one endpoint
with ``Model.deploy(endpoint_type=EndpointType.INFERENCE_COMPONENT_BASED, resources=...)``, each
predictor (its ``component_name``) answering with its own model, ``update_predictor`` scaling the
copies, ``delete_predictor`` and then ``delete_endpoint``."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

from shipyard.server import ServerProcess
from tests._support import boto_client, tgz
from tests.integration.test_inference_components import HANDLER, ROLE, SKLEARN_IMAGE

BUCKET = "sdk-components"


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("sdk-components") / "data") as server:
        yield server


@pytest.fixture
def sagemaker_session(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3
    import sagemaker
    import sagemaker.session

    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    # The SDK looks at a deploying endpoint or component every 20-30 s; every 0.1 s instead.
    boto_session = boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    yield sagemaker.Session(
        boto_session=boto_session,
        sagemaker_client=boto_client("sagemaker", server.url),
        sagemaker_runtime_client=boto_client("sagemaker-runtime", server.url),
        default_bucket=BUCKET,
    )


def test_two_models_share_one_endpoint_as_inference_components(
    sagemaker_session: Any, server: ServerProcess
) -> None:
    from sagemaker.compute_resource_requirements.resource_requirements import ResourceRequirements
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.enums import EndpointType, RoutingStrategy
    from sagemaker.model import Model
    from sagemaker.predictor import Predictor
    from sagemaker.serializers import JSONSerializer

    s3 = boto_client("s3", server.url)
    s3.create_bucket(Bucket=BUCKET)
    predictors = {}
    for name, scale in (("gamma", 2), ("delta", 10)):
        archive = tgz(
            {"model.json": json.dumps({"name": name, "scale": scale}), "code/inference.py": HANDLER}
        )
        s3.put_object(Bucket=BUCKET, Key=f"{name}/model.tar.gz", Body=archive)
        model = Model(
            image_uri=SKLEARN_IMAGE,
            model_data=f"s3://{BUCKET}/{name}/model.tar.gz",
            role=ROLE,
            env={"SAGEMAKER_PROGRAM": "inference.py"},
            name=f"{name}-model",
            predictor_cls=Predictor,
            sagemaker_session=sagemaker_session,
        )
        predictors[name] = model.deploy(
            initial_instance_count=1,
            instance_type="ml.m5.large",
            endpoint_name="sdk-shared",  # the second deploy finds it InService and adds to it
            endpoint_type=EndpointType.INFERENCE_COMPONENT_BASED,
            resources=ResourceRequirements(requests={"num_cpus": 0.5, "memory": 512, "copies": 1}),
            inference_component_name=f"{name}-ic",
            routing_config={"RoutingStrategy": RoutingStrategy.LEAST_OUTSTANDING_REQUESTS},
            serializer=JSONSerializer(),
            deserializer=JSONDeserializer(),
        )
    gamma, delta = predictors["gamma"], predictors["delta"]
    assert gamma.component_name == "gamma-ic" and delta.endpoint_name == gamma.endpoint_name
    assert gamma.predict([[1, 2]])["scores"] == [6]
    assert delta.predict([[1, 2]])["scores"] == [30]

    sm = boto_client("sagemaker", server.url)
    gamma.update_predictor(
        resources=ResourceRequirements(requests={"num_cpus": 0.5, "memory": 512, "copies": 2})
    )
    described = sm.describe_inference_component(InferenceComponentName="gamma-ic")
    assert described["InferenceComponentStatus"] == "InService", described.get("FailureReason")
    assert described["RuntimeConfig"]["CurrentCopyCount"] == 2
    assert len({gamma.predict([[1]])["copy"] for _ in range(4)}) == 2

    listed = sm.list_inference_components(EndpointNameEquals="sdk-shared")["InferenceComponents"]
    assert sorted(c["InferenceComponentName"] for c in listed) == ["delta-ic", "gamma-ic"]

    for predictor in (gamma, delta):
        predictor.delete_predictor(wait=True)
    assert sm.list_inference_components(EndpointNameEquals="sdk-shared")["InferenceComponents"] == []
    gamma.delete_endpoint()
    assert sm.list_endpoints(NameContains="sdk-shared")["Endpoints"] == []
