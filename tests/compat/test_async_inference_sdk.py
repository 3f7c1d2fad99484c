"""Asynchronous inference as the sagemaker SDK 2.x does it, unchanged:
``model.deploy(async_inference_config=AsyncInferenceConfig(...))`` gives an AsyncPredictor;
``predict_async`` uploads the input and returns an AsyncInferenceResponse whose ``get_result``
reads the answer from S3 (or raises AsyncInferenceModelError with the failure); ``predict``
waits for it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.server import ServerProcess
from tests._support import boto_client, tgz

ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"
BUCKET = "sdk-async"

HANDLER = """
import json

def model_fn(model_dir):
    return "model"

def transform_fn(model, body, content_type, accept):
    request = json.loads(body)
    if "fail" in request:
        raise ValueError("cannot take " + str(request["fail"]))
    return json.dumps({"doubled": [2 * v for v in request["values"]]}), "application/json"
"""


@pytest.fixture
def sagemaker_session(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    import boto3
    import sagemaker
    import sagemaker.session

    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    boto_session = boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    yield sagemaker.Session(
        boto_session=boto_session,
        sagemaker_client=boto_client("sagemaker", server.url),
        sagemaker_runtime_client=boto_client("sagemaker-runtime", server.url),
        default_bucket=BUCKET,
    )


def test_async_predictor_predicts_from_s3_and_raises_the_models_failure(
    sagemaker_session: Any, server: ServerProcess, tmp_path: Path
) -> None:
    from sagemaker.async_inference import AsyncInferenceConfig, WaiterConfig
    from sagemaker.deserializers import JSONDeserializer
    from sagemaker.exceptions import AsyncInferenceModelError
    from sagemaker.predictor_async import AsyncPredictor
    from sagemaker.serializers import JSONSerializer
    from sagemaker.sklearn import SKLearnModel

    s3 = boto_client("s3", server.url)
    s3.create_bucket(Bucket=BUCKET)
    s3.put_object(Bucket=BUCKET, Key="model/model.tar.gz", Body=tgz({"model.txt": "unused"}))
    (tmp_path / "inference.py").write_text(HANDLER)
    model = SKLearnModel(
        model_data=f"s3://{BUCKET}/model/model.tar.gz",
        role=ROLE,
        entry_point="inference.py",
        source_dir=str(tmp_path),
        framework_version="1.2-1",
        sagemaker_session=sagemaker_session,
    )
    predictor = model.deploy(
        initial_instance_count=1,
        instance_type="ml.m5.large",
        serializer=JSONSerializer(),
        deserializer=JSONDeserializer(),
        async_inference_config=AsyncInferenceConfig(
            output_path=f"s3://{BUCKET}/async-out",
            failure_path=f"s3://{BUCKET}/async-failed",
            max_concurrent_invocations_per_instance=2,
        ),
    )
    try:
        assert isinstance(predictor, AsyncPredictor)
        waiter = WaiterConfig(max_attempts=600, delay=0.1)
        response = predictor.predict_async(data={"values": [1, 2, 3]})
        assert response.output_path.startswith(f"s3://{BUCKET}/async-out/")
        assert response.get_result(waiter) == {"doubled": [2, 4, 6]}
        assert predictor.predict(data={"values": [5]}, waiter_config=waiter) == {"doubled": [10]}

        failing = predictor.predict_async(data={"fail": "this"})
        # get_result() without a waiter looks once: wait for the failure object first (with a
        # waiter, the SDK's thread that polls the output path would go on after the failure).
        bucket, _, key = failing.failure_path.removeprefix("s3://").partition("/")
        s3.get_waiter("object_exists").wait(
            Bucket=bucket, Key=key, WaiterConfig={"Delay": 0.1, "MaxAttempts": 600}
        )
        with pytest.raises(AsyncInferenceModelError) as failed:
            failing.get_result()
        assert "cannot take this" in str(failed.value)

        sm = boto_client("sagemaker", server.url)
        config = sm.describe_endpoint_config(
            EndpointConfigName=sm.describe_endpoint(EndpointName=predictor.endpoint_name)[
                "EndpointConfigName"
            ]
        )
        assert config["AsyncInferenceConfig"]["ClientConfig"] == {"MaxConcurrentInvocationsPerInstance": 2}
    finally:
        predictor.delete_endpoint()
