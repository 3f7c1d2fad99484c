"""SageMaker's built-in XGBoost algorithm: image + hyperparameters, no script."""

from __future__ import annotations

import io
import json
import tarfile
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from tests._support import boto_client
from tests._titanic import numeric_csv
from tests.integration.test_training import BUCKET, _create, _wait

XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"
PARAMS = {
    "objective": "binary:logistic",
    "num_round": 50,
    "max_depth": 4,
    "eta": 0.2,
    "eval_metric": "auc",
    "subsample": 1.0,
}

EVALUATE = """
import json, os, tarfile
import numpy as np, xgboost as xgb
data = os.environ["SM_INPUT_DIR"] + "/data"
with tarfile.open(data + "/model/model.tar.gz") as tar:
    tar.extractall("/tmp/model")
builtin = xgb.Booster()
builtin.load_model("/tmp/model/xgboost-model")
train = np.vstack([np.loadtxt(os.path.join(data, "train", f), delimiter=",", ndmin=2)
                   for f in sorted(os.listdir(data + "/train"))])
test = np.loadtxt(data + "/test/test.csv", delimiter=",", ndmin=2)
params = json.loads(os.environ["SM_HP_PARAMS"])
rounds = params.pop("num_round")
direct = xgb.train(params, xgb.DMatrix(train[:, 1:], label=train[:, 0]), rounds)
def accuracy(booster):
    return float(np.mean((booster.predict(xgb.DMatrix(test[:, 1:])) > 0.5) == test[:, 0]))
print("accuracy", json.dumps({"builtin": accuracy(builtin), "direct": accuracy(direct)}))
"""


@pytest.fixture(scope="module")
def xgb_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("xgb-server")) as server:
        s3 = boto_client("s3", server.url)
        s3.create_bucket(Bucket=BUCKET)
        rows = numeric_csv("train", header=False).decode().splitlines()
        s3.put_object(
            Bucket=BUCKET, Key="titanic/train/part-0.csv", Body="\n".join(rows[:356]).encode() + b"\n"
        )
        s3.put_object(
            Bucket=BUCKET, Key="titanic/train/part-1.csv", Body="\n".join(rows[356:]).encode() + b"\n"
        )
        s3.put_object(
            Bucket=BUCKET, Key="titanic/validation/validation.csv", Body=numeric_csv("test", header=False)
        )
        s3.put_object(Bucket=BUCKET, Key="titanic/test/test.csv", Body=numeric_csv("test", header=False))
        yield server


def _evaluate(sm: Any, s3: Any, logs: Any, model_uri: str) -> dict[str, float]:
    channels = {
        "model": model_uri,
        "train": f"s3://{BUCKET}/titanic/train/",
        "test": f"s3://{BUCKET}/titanic/test/",
    }
    name = _create(
        sm,
        s3,
        EVALUATE,
        image=XGBOOST_IMAGE,
        channels=channels,
        hyperparameters={"params": json.dumps(json.dumps(PARAMS))},
    )
    description = _wait(sm, name, timeout=300)
    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    events = logs.filter_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{name}/", filterPattern="accuracy"
    )["events"]
    return json.loads(events[-1]["message"].split(" ", 1)[1])  # type: ignore[no-any-return]


def test_sdk_estimator_with_the_builtin_image_matches_xgboost_run_directly(
    xgb_server: ServerProcess, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    import sagemaker
    from sagemaker import image_uris
    from sagemaker.estimator import Estimator
    from sagemaker.inputs import TrainingInput

    monkeypatch.setenv("AWS_ENDPOINT_URL", xgb_server.url)
    session = sagemaker.Session(
        boto_session=boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"),
        sagemaker_client=boto_client("sagemaker", xgb_server.url),
        default_bucket="sdk-xgboost",
    )
    estimator = Estimator(
        image_uri=image_uris.retrieve("xgboost", "us-east-1", "1.7-1"),
        role="arn:aws:iam::000000000000:role/R",
        instance_count=1,
        instance_type="ml.m5.large",
        output_path=f"s3://{BUCKET}/xgb-output",
        sagemaker_session=session,
    )
    estimator.set_hyperparameters(**PARAMS)
    estimator.fit(
        {
            "train": TrainingInput(f"s3://{BUCKET}/titanic/train/", content_type="text/csv"),
            "validation": TrainingInput(f"s3://{BUCKET}/titanic/validation/", content_type="text/csv"),
        },
        logs=False,
    )
    description = estimator.latest_training_job.describe()
    assert description["TrainingJobStatus"] == "Completed"
    metrics = {m["MetricName"]: m["Value"] for m in description["FinalMetricDataList"]}
    assert set(metrics) == {"train:auc", "validation:auc"} and metrics["validation:auc"] > 0.8
    sm, s3, logs = (boto_client(s, xgb_server.url) for s in ("sagemaker", "s3", "logs"))
    events = logs.filter_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs",
        logStreamNamePrefix=f"{description['TrainingJobName']}/",
        filterPattern="[49]",
    )["events"]
    assert any(
        e["message"].startswith("[49]#011train-auc:") and "#011validation-auc:" in e["message"]
        for e in events
    )
    model = s3.get_object(Bucket=BUCKET, Key=estimator.model_data.split(f"{BUCKET}/", 1)[1])["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(model)) as tar:
        assert tar.getnames() == ["xgboost-model"]
    accuracy = _evaluate(sm, s3, logs, estimator.model_data)
    print("held-out accuracy, single instance:", accuracy)
    assert accuracy["builtin"] > 0.75
    assert abs(accuracy["builtin"] - accuracy["direct"]) <= 0.02, accuracy

    # Deployed, the built-in model scores the held-out rows (CSV in, CSV out) exactly as evaluated.
    import sagemaker.session
    from sagemaker.serializers import CSVSerializer

    wait_until = sagemaker.session._wait_until  # the SDK sleeps 30 s between looks otherwise
    monkeypatch.setattr(sagemaker.session, "_wait_until", lambda fn, poll=5: wait_until(fn, 0.1))
    predictor = estimator.deploy(1, "ml.m5.large", serializer=CSVSerializer())
    rows = [
        [float(v) for v in line.split(",")] for line in numeric_csv("test", header=False).decode().split()
    ]
    answer = predictor.predict([row[1:] for row in rows]).decode()
    probabilities = [float(v) for v in answer.split(",")]  # one line, as the built-in container answers
    assert len(probabilities) == len(rows) and all(0 < p < 1 for p in probabilities)
    hits = sum((p > 0.5) == (row[0] == 1) for p, row in zip(probabilities, rows, strict=True))
    assert hits / len(rows) == pytest.approx(accuracy["builtin"])
    predictor.delete_model()
    predictor.delete_endpoint()


def test_two_instances_sharded_train_a_model_of_comparable_quality(xgb_server: ServerProcess) -> None:
    sm, s3, logs = (boto_client(s, xgb_server.url) for s in ("sagemaker", "s3", "logs"))
    name = "xgb-two-instances"
    sm.create_training_job(
        TrainingJobName=name,
        RoleArn="arn:aws:iam::000000000000:role/R",
        AlgorithmSpecification={"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"},
        HyperParameters={k: str(v) for k, v in PARAMS.items()},
        InputDataConfig=[
            {
                "ChannelName": "train",
                "ContentType": "text/csv",
                "DataSource": {
                    "S3DataSource": {
                        "S3DataType": "S3Prefix",
                        "S3Uri": f"s3://{BUCKET}/titanic/train/",
                        "S3DataDistributionType": "ShardedByS3Key",
                    }
                },
            }
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/out"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 2, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
    )
    description = _wait(sm, name, timeout=300)
    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    events = logs.filter_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs",
        logStreamNamePrefix=f"{name}/",
        filterPattern="joined distributed training",
    )["events"]
    assert len(events) == 2
    accuracy = _evaluate(sm, s3, logs, description["ModelArtifacts"]["S3ModelArtifacts"])
    print("held-out accuracy, two instances:", accuracy)
    assert accuracy["builtin"] > 0.75


def test_libsvm_by_default_and_parquet(xgb_server: ServerProcess) -> None:
    import pandas as pd

    sm, s3, _ = (boto_client(s, xgb_server.url) for s in ("sagemaker", "s3", "logs"))
    rows = [line.split(",") for line in numeric_csv("train", header=False).decode().splitlines()]
    libsvm = "\n".join(f"{r[0]} " + " ".join(f"{i}:{v}" for i, v in enumerate(r[1:])) for r in rows) + "\n"
    s3.put_object(Bucket=BUCKET, Key="formats/libsvm/train.libsvm", Body=libsvm.encode())
    frame = pd.DataFrame([[float(v) for v in r] for r in rows])
    frame.columns = [str(c) for c in frame.columns]
    buffer = io.BytesIO()
    frame.to_parquet(buffer)
    s3.put_object(Bucket=BUCKET, Key="formats/parquet/validation.parquet", Body=buffer.getvalue())
    sm.create_training_job(
        TrainingJobName="xgb-formats",
        RoleArn="arn:aws:iam::000000000000:role/R",
        AlgorithmSpecification={"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"},
        HyperParameters={k: str(v) for k, v in PARAMS.items()},
        InputDataConfig=[
            {
                "ChannelName": "train",
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/formats/libsvm/"}
                },
            },
            {
                "ChannelName": "validation",
                "ContentType": "application/x-parquet",
                "DataSource": {
                    "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/formats/parquet/"}
                },
            },
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/out"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
    )
    description = _wait(sm, "xgb-formats", timeout=300)
    assert description["TrainingJobStatus"] == "Completed", description.get("FailureReason")
    metrics = {m["MetricName"]: m["Value"] for m in description["FinalMetricDataList"]}
    assert metrics["validation:auc"] > 0.8  # the same rows in both formats train and validate alike
    assert abs(metrics["validation:auc"] - metrics["train:auc"]) < 1e-6


@pytest.mark.parametrize(
    ("hyperparameters", "named"),
    [
        ({"objective": "binary:logistic"}, "num_round"),
        ({"num_round": "10", "eta": "2"}, "'eta'"),
        ({"num_round": "ten"}, "'num_round' must be an integer"),
        ({"num_round": "10", "objective": "binary:magic"}, "'objective'"),
        ({"num_round": "10", "learning_speed": "3"}, "'learning_speed'"),
        ({"num_round": "10", "objective": "multi:softmax"}, "'num_class'"),
        ({"num_round": "10", "eval_metric": "auc,accuracy"}, "'accuracy'"),
    ],
)
def test_bad_hyperparameters_are_refused_naming_them(
    xgb_server: ServerProcess, hyperparameters: dict[str, str], named: str
) -> None:
    sm = boto_client("sagemaker", xgb_server.url)
    with pytest.raises(ClientError) as exc:
        sm.create_training_job(
            TrainingJobName="bad-hyperparameters",
            RoleArn="arn:aws:iam::000000000000:role/R",
            AlgorithmSpecification={"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"},
            HyperParameters=hyperparameters,
            InputDataConfig=[
                {
                    "ChannelName": "train",
                    "DataSource": {
                        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/titanic/train/"}
                    },
                }
            ],
            OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/out"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            StoppingCondition={"MaxRuntimeInSeconds": 60},
        )
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    assert named in exc.value.response["Error"]["Message"]
