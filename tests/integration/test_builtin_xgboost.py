"""SageMaker's built-in XGBoost algorithm: image + hyperparameters, no script."""

from __future__ import annotations

import io
import json
import tarfile
import time
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


# -- as SageMaker's container behaves: model files, batch transform, endpoints, failures ----------
OLD_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.2-2"
ROLE = "arn:aws:iam::000000000000:role/R"


def _train_builtin(
    sm: Any, name: str, image: str, params: dict[str, Any], train: str, wait: bool = True
) -> dict[str, Any]:
    sm.create_training_job(
        TrainingJobName=name,
        RoleArn=ROLE,
        AlgorithmSpecification={"TrainingImage": image, "TrainingInputMode": "File"},
        HyperParameters={k: str(v) for k, v in params.items()},
        InputDataConfig=[
            {
                "ChannelName": "train",
                "ContentType": "text/csv",
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": train}},
            }
        ],
        OutputDataConfig={"S3OutputPath": f"s3://{BUCKET}/out"},
        ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        StoppingCondition={"MaxRuntimeInSeconds": 300},
    )
    return _wait(sm, name, timeout=300) if wait else {}


@pytest.fixture(scope="module")
def xgb_models(xgb_server: ServerProcess) -> dict[str, str]:
    """Two built-in models as SageMaker models: binary:logistic on 1.7-1, multi:softprob on 1.2-2."""
    sm = boto_client("sagemaker", xgb_server.url)
    models: dict[str, str] = {}
    kinds = (
        ("native", XGBOOST_IMAGE, PARAMS),
        (
            "pickle",
            OLD_IMAGE,
            {**PARAMS, "objective": "multi:softprob", "num_class": 2, "eval_metric": "mlogloss"},
        ),
    )
    for key, image, params in kinds:  # both train at once
        _train_builtin(sm, f"xgb-model-{key}", image, params, f"s3://{BUCKET}/titanic/train/", wait=False)
    for key, image, _ in kinds:
        job = _wait(sm, f"xgb-model-{key}", timeout=300)
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        sm.create_model(
            ModelName=f"xgb-{key}",
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": image, "ModelDataUrl": job["ModelArtifacts"]["S3ModelArtifacts"]},
        )
        models[key] = job["ModelArtifacts"]["S3ModelArtifacts"]
    return models


def _transform(sm: Any, name: str, model: str, source: str, wait: bool = True, **kw: Any) -> dict[str, Any]:
    sm.create_transform_job(
        TransformJobName=name,
        ModelName=model,
        TransformInput={
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": source}},
            "SplitType": "Line",
            **kw.pop("input", {}),
        },
        TransformOutput={"S3OutputPath": f"s3://{BUCKET}/{name}/", "AssembleWith": "Line"},
        TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
        **kw,
    )
    return _finished(sm, name) if wait else {}


def _finished(sm: Any, name: str) -> dict[str, Any]:
    deadline = time.monotonic() + 120
    while (job := sm.describe_transform_job(TransformJobName=name))["TransformJobStatus"] == "InProgress":
        assert time.monotonic() < deadline, f"{name} still running"
        time.sleep(0.05)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    return job  # type: ignore[no-any-return]


def _lines(s3: Any, key: str) -> list[str]:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()


def test_transform_without_content_type_reads_csv_and_joins_each_record(
    xgb_server: ServerProcess, xgb_models: dict[str, str]
) -> None:
    sm, s3 = boto_client("sagemaker", xgb_server.url), boto_client("s3", xgb_server.url)
    rows = numeric_csv("test", header=False).decode().split()
    # No ContentType: the container reads CSV. The label is filtered out on the way in and kept
    # beside the score on the way out, as SageMaker's join/filter notebook does it.
    _transform(
        sm,
        "xgb-join",
        "xgb-native",
        f"s3://{BUCKET}/titanic/test/",
        DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
        BatchStrategy="MultiRecord",
    )
    joined = [line.split(",") for line in _lines(s3, "xgb-join/test.csv.out")]
    assert len(joined) == len(rows)
    assert [label for label, _ in joined] == [row.split(",")[0] for row in rows]
    hits = sum((float(score) > 0.5) == (float(label) == 1) for label, score in joined)
    assert hits / len(rows) > 0.75

    # No filters: one score a line, in order, for CSV and for libsvm input alike.
    libsvm = "".join(
        f"{r[0]} " + " ".join(f"{i}:{v}" for i, v in enumerate(r[1:])) + "\n"
        for r in (x.split(",") for x in rows)
    )
    s3.put_object(Bucket=BUCKET, Key="titanic/test-libsvm/test.libsvm", Body=libsvm.encode())
    features = "".join(row.split(",", 1)[1] + "\n" for row in rows)
    s3.put_object(Bucket=BUCKET, Key="titanic/test-features/test.csv", Body=features.encode())
    _transform(sm, "xgb-csv", "xgb-native", f"s3://{BUCKET}/titanic/test-features/", wait=False)
    libsvm_input = {"ContentType": "text/libsvm"}
    _transform(
        sm, "xgb-libsvm", "xgb-native", f"s3://{BUCKET}/titanic/test-libsvm/", False, input=libsvm_input
    )
    _finished(sm, "xgb-csv")
    _finished(sm, "xgb-libsvm")
    csv_scores = [float(v) for v in _lines(s3, "xgb-csv/test.csv.out")]
    libsvm_scores = [float(v) for v in _lines(s3, "xgb-libsvm/test.libsvm.out")]
    assert len(csv_scores) == len(rows)
    assert csv_scores == pytest.approx([float(score) for _, score in joined])
    assert libsvm_scores == pytest.approx(csv_scores, abs=1e-6)


def test_a_model_of_1_2_is_a_pickled_booster_and_softprob_scores_a_line_per_record(
    xgb_server: ServerProcess, xgb_models: dict[str, str]
) -> None:
    sm, s3, logs = (boto_client(s, xgb_server.url) for s in ("sagemaker", "s3", "logs"))
    # As AWS's docs tell users of versions before 1.3-1: pickle.load(open("xgboost-model", "rb")).
    load = (
        "import os, pickle, tarfile\n"
        "with tarfile.open(os.environ['SM_CHANNEL_MODEL'] + '/model.tar.gz') as tar:\n"
        "    tar.extractall('/tmp/model')\n"
        "booster = pickle.load(open('/tmp/model/xgboost-model', 'rb'))\n"
        "print('loaded', type(booster).__name__, booster.num_boosted_rounds())\n"
    )
    name = _create(sm, s3, load, image=OLD_IMAGE, channels={"model": xgb_models["pickle"]})
    job = _wait(sm, name, timeout=300)
    assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
    events = logs.filter_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{name}/", filterPattern="loaded"
    )["events"]
    assert "loaded Booster 50" in [e["message"] for e in events]

    _transform(
        sm,
        "xgb-softprob",
        "xgb-pickle",
        f"s3://{BUCKET}/titanic/test-features/",
        input={"ContentType": "text/csv"},
        DataProcessing={"JoinSource": "Input"},
    )
    rows = numeric_csv("test", header=False).decode().split()
    lines = [[float(v) for v in line.split(",")] for line in _lines(s3, "xgb-softprob/test.csv.out")]
    assert len(lines) == len(rows)
    for line, row in zip(lines, rows, strict=True):
        features = [float(v) for v in row.split(",")[1:]]
        assert line[:-2] == features and sum(line[-2:]) == pytest.approx(1, abs=1e-5)


def test_an_endpoint_reads_csv_by_default_and_refuses_what_it_cannot_read(
    xgb_server: ServerProcess, xgb_models: dict[str, str]
) -> None:
    sm, runtime = boto_client("sagemaker", xgb_server.url), boto_client("sagemaker-runtime", xgb_server.url)
    sm.create_endpoint_config(
        EndpointConfigName="xgb-ep",
        ProductionVariants=[
            {
                "VariantName": "AllTraffic",
                "ModelName": "xgb-native",
                "InstanceType": "ml.m5.large",
                "InitialInstanceCount": 1,
            }
        ],
    )
    sm.create_endpoint(EndpointName="xgb-ep", EndpointConfigName="xgb-ep")
    deadline = time.monotonic() + 120
    while sm.describe_endpoint(EndpointName="xgb-ep")["EndpointStatus"] == "Creating":
        assert time.monotonic() < deadline
        time.sleep(0.05)
    rows = [row.split(",", 1)[1] for row in numeric_csv("test", header=False).decode().split()[:3]]
    answer = runtime.invoke_endpoint(EndpointName="xgb-ep", Body="\n".join(rows))  # no ContentType
    assert answer["ContentType"] == "text/csv"
    scores = [float(v) for v in answer["Body"].read().decode().split(",")]  # one line, as the container
    assert len(scores) == 3 and all(0 < s < 1 for s in scores)
    with pytest.raises(ClientError) as unreadable:
        runtime.invoke_endpoint(EndpointName="xgb-ep", Body=b'{"instances": [[1, 2]]}')
    error = unreadable.value.response
    assert error["Error"]["Code"] == "ModelError" and error["OriginalStatusCode"] == 415
    assert "could not be read as text/csv" in error["Error"]["Message"]
    assert "Received client error (415)" in error["Error"]["Message"]
    with pytest.raises(ClientError) as too_many:
        runtime.invoke_endpoint(EndpointName="xgb-ep", Body=",".join(["1"] * 20), ContentType="text/csv")
    assert too_many.value.response["OriginalStatusCode"] == 400
    assert "XGBoost could not score the rows" in too_many.value.response["Error"]["Message"]
    sm.delete_endpoint(EndpointName="xgb-ep")


def test_an_xgboost_failure_says_xgboosts_message_without_frames(xgb_server: ServerProcess) -> None:
    sm, s3, logs = (boto_client(s, xgb_server.url) for s in ("sagemaker", "s3", "logs"))
    rows = numeric_csv("test", header=False).decode().split()
    labels_of_two = "".join("2," + row.split(",", 1)[1] + "\n" for row in rows)
    s3.put_object(Bucket=BUCKET, Key="bad-labels/train.csv", Body=labels_of_two.encode())
    job = _train_builtin(sm, "xgb-bad-labels", XGBOOST_IMAGE, PARAMS, f"s3://{BUCKET}/bad-labels/")
    assert job["TrainingJobStatus"] == "Failed"
    reason = job["FailureReason"]
    assert reason.startswith("AlgorithmError: ") and "label must be in [0,1]" in reason, reason
    assert "Stack trace" not in reason and "[bt]" not in reason and "\n" not in reason
    events = logs.filter_log_events(
        logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix="xgb-bad-labels/"
    )
    messages = [e["message"] for e in events["events"] if not e["message"].startswith("Shipyard: ")]
    assert messages[-1] == reason and not any("[bt]" in m for m in messages)
