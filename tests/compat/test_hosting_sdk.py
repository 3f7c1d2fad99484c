"""Endpoints as the sagemaker SDK 2.x deploys them: estimator.deploy(), predictor.predict(),
delete_endpoint() and delete_model(), unchanged."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

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
        default_bucket="sdk-hosting",
    )


def _titanic(server: ServerProcess, session: Any) -> tuple[str, list[list[float]]]:
    """The training CSV uploaded; a few rows of features to predict on."""
    s3 = boto_client("s3", server.url)
    bucket = session.default_bucket()
    csv = numeric_csv("train")
    s3.put_object(Bucket=bucket, Key="titanic/train.csv", Body=csv)
    rows = [line.split(",") for line in csv.decode().splitlines()[1:6]]
    features = [[float(v) if v else 0.0 for v in row[1:]] for row in rows]
    return f"s3://{bucket}/titanic/train.csv", features


def test_sklearn_estimator_deploy_predict_delete(sagemaker_session: Any, server: ServerProcess) -> None:
    import numpy as np
    from sagemaker.sklearn import SKLearn

    train, features = _titanic(server, sagemaker_session)
    estimator = SKLearn(
        entry_point="sklearn_serve.py",
        source_dir=str(SCRIPTS),
        framework_version="1.2-1",
        instance_type="ml.m5.large",
        instance_count=1,
        role=ROLE,
        sagemaker_session=sagemaker_session,
    )
    estimator.fit({"train": train}, logs=False)
    predictor = estimator.deploy(initial_instance_count=1, instance_type="ml.m5.large")
    probabilities = predictor.predict(np.array(features))  # numpy in, numpy out (application/x-npy)
    assert probabilities.shape == (5,) and all(0.0 < p < 1.0 for p in probabilities)
    sm = boto_client("sagemaker", server.url)
    endpoint = sm.describe_endpoint(EndpointName=predictor.endpoint_name)
    assert endpoint["EndpointStatus"] == "InService"
    model_name = sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])[
        "ProductionVariants"
    ][0]["ModelName"]
    environment = sm.describe_model(ModelName=model_name)["PrimaryContainer"]["Environment"]
    assert environment["SAGEMAKER_PROGRAM"] == "sklearn_serve.py"
    predictor.delete_model()  # first: it finds the model through the endpoint config
    predictor.delete_endpoint()  # and its config
    with pytest.raises(ClientError, match="Could not find endpoint"):
        sm.describe_endpoint(EndpointName=predictor.endpoint_name)
    with pytest.raises(ClientError, match="Could not find model"):
        sm.describe_model(ModelName=model_name)
    with pytest.raises(ClientError, match="Could not find endpoint configuration"):
        sm.describe_endpoint_config(EndpointConfigName=endpoint["EndpointConfigName"])


def test_pytorch_estimator_deploys_torchscript(sagemaker_session: Any) -> None:
    import numpy as np
    from sagemaker.pytorch import PyTorch

    estimator = PyTorch(
        entry_point="torch_serve.py",
        source_dir=str(SCRIPTS),
        framework_version="2.1",
        py_version="py310",
        instance_type="ml.m5.large",
        instance_count=1,
        role=ROLE,
        sagemaker_session=sagemaker_session,
    )
    estimator.fit(logs=False)
    predictor = estimator.deploy(initial_instance_count=1, instance_type="ml.m5.large")
    try:
        rows = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, 2.0]], dtype=np.float32)
        prediction = predictor.predict(rows)  # numpy in and out, the PyTorchPredictor's defaults
        assert prediction.shape == (2, 1)
        assert prediction[:, 0] == pytest.approx([1.25, -0.75], abs=0.01)  # the line it learnt
    finally:
        predictor.delete_model()
        predictor.delete_endpoint()


def test_sdk_transformer_scores_a_csv_line_by_line(sagemaker_session: Any, server: ServerProcess) -> None:
    from sagemaker.sklearn import SKLearn

    train, _ = _titanic(server, sagemaker_session)
    estimator = SKLearn(
        entry_point="sklearn_serve.py",
        source_dir=str(SCRIPTS),
        framework_version="1.2-1",
        instance_type="ml.m5.large",
        instance_count=1,
        role=ROLE,
        sagemaker_session=sagemaker_session,
    )
    estimator.fit({"train": train}, logs=False)
    s3 = boto_client("s3", server.url)
    bucket = sagemaker_session.default_bucket()
    rows = [line.split(",")[1:] for line in numeric_csv("test").decode().splitlines()[1:]]
    body = "".join(",".join(v or "0" for v in row) + "\n" for row in rows)
    s3.put_object(Bucket=bucket, Key="titanic-batch/test.csv", Body=body.encode())
    transformer = estimator.transformer(
        instance_count=1,
        instance_type="ml.m5.large",
        strategy="MultiRecord",
        assemble_with="Line",
        accept="text/csv",
        output_path=f"s3://{bucket}/titanic-scored",
    )
    transformer.transform(
        f"s3://{bucket}/titanic-batch/", content_type="text/csv", split_type="Line", wait=True, logs=False
    )
    scored = s3.get_object(Bucket=bucket, Key="titanic-scored/test.csv.out")["Body"].read().decode().split()
    assert len(scored) == len(rows) and all(0.0 < float(p) < 1.0 for p in scored)  # a probability per line
    description = boto_client("sagemaker", server.url).describe_transform_job(
        TransformJobName=transformer.latest_transform_job.name
    )
    assert description["TransformJobStatus"] == "Completed" and description["BatchStrategy"] == "MultiRecord"
