"""Serverless endpoints as the sagemaker SDK 2.x deploys them, unchanged:
``deploy(serverless_inference_config=ServerlessInferenceConfig(...))`` and ``predictor.predict``."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.server import ServerProcess
from tests._support import boto_client
from tests._titanic import numeric_csv

SCRIPTS = Path(__file__).parent / "scripts"
ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"


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
        default_bucket="sdk-serverless",
    )


def test_sklearn_model_deploys_serverless_and_predicts(sagemaker_session: Any, server: ServerProcess) -> None:
    import numpy as np
    from sagemaker.serverless import ServerlessInferenceConfig
    from sagemaker.sklearn import SKLearn

    s3 = boto_client("s3", server.url)
    bucket = sagemaker_session.default_bucket()
    csv = numeric_csv("train")
    s3.put_object(Bucket=bucket, Key="titanic/train.csv", Body=csv)
    rows = [line.split(",") for line in csv.decode().splitlines()[1:6]]
    features = [[float(v) if v else 0.0 for v in row[1:]] for row in rows]
    estimator = SKLearn(
        entry_point="sklearn_serve.py",
        source_dir=str(SCRIPTS),
        framework_version="1.2-1",
        instance_type="ml.m5.large",
        instance_count=1,
        role=ROLE,
        sagemaker_session=sagemaker_session,
    )
    estimator.fit({"train": f"s3://{bucket}/titanic/train.csv"}, logs=False)
    predictor = estimator.deploy(
        serverless_inference_config=ServerlessInferenceConfig(memory_size_in_mb=2048, max_concurrency=2)
    )
    try:
        sm = boto_client("sagemaker", server.url)
        [variant] = sm.describe_endpoint(EndpointName=predictor.endpoint_name)["ProductionVariants"]
        assert variant["CurrentServerlessConfig"] == {"MemorySizeInMB": 2048, "MaxConcurrency": 2}
        probabilities = predictor.predict(np.array(features))  # the cold start, then the answer
        assert probabilities.shape == (5,) and all(0.0 < p < 1.0 for p in probabilities)
        assert (predictor.predict(np.array(features)) == probabilities).all()  # warm
    finally:
        predictor.delete_model()
        predictor.delete_endpoint()
