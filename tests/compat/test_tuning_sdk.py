"""Tuning jobs as SageMaker notebooks run them with the sagemaker SDK 2.x: tune, then attach to the
tuning job by name (a new kernel, a colleague's job) and read its best estimator and analytics."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.server import ServerProcess
from tests._support import boto_client
from tests._titanic import numeric_csv

SCRIPTS = Path(__file__).parent / "scripts"
ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"


@pytest.fixture
def sagemaker_session(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    import boto3
    import sagemaker

    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    boto_session = boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    yield sagemaker.Session(
        boto_session=boto_session,
        sagemaker_client=boto_client("sagemaker", server.url),
        default_bucket="sdk-tuning-attach",
    )


def test_builtin_xgboost_tuner_attached_by_name(sagemaker_session, server: ServerProcess) -> None:  # type: ignore[no-untyped-def]
    from sagemaker import image_uris
    from sagemaker.estimator import Estimator
    from sagemaker.inputs import TrainingInput
    from sagemaker.tuner import HyperparameterTuner, IntegerParameter

    s3 = boto_client("s3", server.url)
    bucket = sagemaker_session.default_bucket()
    for split, channel in (("train", "train"), ("test", "validation")):
        s3.put_object(Bucket=bucket, Key=f"xgb/{channel}.csv", Body=numeric_csv(split, header=False))
    estimator = Estimator(
        image_uri=image_uris.retrieve("xgboost", "us-east-1", "1.7-1"),
        instance_type="ml.m4.xlarge",  # an older type SageMaker still accepts
        instance_count=1,
        role=ROLE,
        output_path=f"s3://{bucket}/models",
        sagemaker_session=sagemaker_session,
    )
    estimator.set_hyperparameters(objective="binary:logistic", num_round=5)  # no eval_metric
    tuner = HyperparameterTuner(
        estimator,
        "validation:auc",
        {"max_depth": IntegerParameter(2, 4)},
        max_jobs=2,
        max_parallel_jobs=2,
        strategy="Random",
        base_tuning_job_name="xgb-attach",
    )
    inputs = {
        c: TrainingInput(f"s3://{bucket}/xgb/{c}.csv", content_type="text/csv")
        for c in ("train", "validation")
    }
    tuner.fit(inputs, wait=True)
    name = tuner.latest_tuning_job.name

    attached = HyperparameterTuner.attach(name, sagemaker_session=sagemaker_session)
    assert type(attached.estimator) is Estimator
    assert attached.estimator.instance_type == "ml.m4.xlarge"
    assert attached.objective_metric_name == "validation:auc" and attached.max_jobs == 2
    assert "_tuning_objective_metric" not in attached.estimator.hyperparameters()
    assert attached.estimator.hyperparameters()["num_round"] == "5"

    best = attached.best_estimator()
    trial = best.latest_training_job.describe()
    # the trial ran with the objective as SageMaker gives it, and XGBoost evaluated that metric
    assert trial["HyperParameters"]["_tuning_objective_metric"] == "validation:auc"
    assert "validation:auc" in [m["MetricName"] for m in trial["FinalMetricDataList"]]
    assert best.model_data.startswith(f"s3://{bucket}/models/{trial['TrainingJobName']}/")
    frame = attached.analytics().dataframe()
    assert len(frame) == 2 and set(frame["max_depth"]) <= {2.0, 3.0, 4.0}
    assert frame["FinalObjectiveValue"].between(0.5, 1).all()


def test_framework_tuner_attached_as_its_estimator_class(sagemaker_session, server: ServerProcess) -> None:  # type: ignore[no-untyped-def]
    from sagemaker.inputs import TrainingInput
    from sagemaker.sklearn import SKLearn
    from sagemaker.tuner import HyperparameterTuner, IntegerParameter

    s3 = boto_client("s3", server.url)
    bucket = sagemaker_session.default_bucket()
    s3.put_object(Bucket=bucket, Key="titanic/train.csv", Body=numeric_csv("train"))
    estimator = SKLearn(
        entry_point="train_sklearn.py",  # parses its arguments strictly: no stray tuning argument
        source_dir=str(SCRIPTS),
        framework_version="1.2-1",
        instance_type="ml.m5.large",
        instance_count=1,
        role=ROLE,
        hyperparameters={"n-estimators": 1},
        sagemaker_session=sagemaker_session,
    )
    tuner = HyperparameterTuner(
        estimator,
        "train:accuracy",
        {"max-depth": IntegerParameter(2, 3)},
        metric_definitions=[{"Name": "train:accuracy", "Regex": "train_accuracy=([0-9.]+)"}],
        max_jobs=1,
        max_parallel_jobs=1,
        base_tuning_job_name="sk-attach",
    )
    tuner.fit({"train": TrainingInput(f"s3://{bucket}/titanic/train.csv")}, wait=True)
    name = tuner.latest_tuning_job.name
    described = sagemaker_session.sagemaker_client.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name
    )
    static = described["TrainingJobDefinition"]["StaticHyperParameters"]
    assert static["_tuning_objective_metric"] == '"train:accuracy"'
    assert static["sagemaker_estimator_class_name"] == '"SKLearn"'

    attached = HyperparameterTuner.attach(name, sagemaker_session=sagemaker_session)
    assert type(attached.estimator) is SKLearn
    assert attached.estimator.entry_point == "train_sklearn.py"
    assert attached.estimator.framework_version == "1.2-1"
    best = attached.best_estimator()
    assert type(best) is SKLearn and best.hyperparameters()["max-depth"] in ("2", "3")
    assert best.latest_training_job.describe()["TrainingJobStatus"] == "Completed"
