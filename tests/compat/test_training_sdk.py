"""Training jobs as the sagemaker SDK 2.x runs them: unchanged estimator code, real SDK."""

from __future__ import annotations

import io
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.server import ServerProcess
from tests._support import boto_client
from tests._titanic import numeric_csv

SCRIPTS = Path(__file__).parent / "scripts"


@pytest.fixture
def sagemaker_session(server: ServerProcess, monkeypatch: pytest.MonkeyPatch) -> Iterator[object]:
    import boto3
    import sagemaker

    monkeypatch.setenv("AWS_ENDPOINT_URL", server.url)
    monkeypatch.setenv("SAGEMAKER_SUPPRESS_V2_WARNING", "1")
    boto_session = boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1")
    session = sagemaker.Session(
        boto_session=boto_session,
        sagemaker_client=boto_client("sagemaker", server.url),
        default_bucket="sdk-training",
    )
    yield session


def test_sklearn_estimator_fit_with_logs(
    sagemaker_session, server: ServerProcess, capsys: pytest.CaptureFixture[str]
) -> None:  # type: ignore[no-untyped-def]
    from sagemaker.inputs import TrainingInput
    from sagemaker.sklearn import SKLearn

    s3 = boto_client("s3", server.url)
    bucket = sagemaker_session.default_bucket()
    s3.put_object(Bucket=bucket, Key="titanic/train.csv", Body=numeric_csv("train"))
    estimator = SKLearn(
        entry_point="train_sklearn.py",
        source_dir=str(SCRIPTS),
        framework_version="1.2-1",
        instance_type="ml.m5.large",
        instance_count=1,
        role="arn:aws:iam::000000000000:role/SageMakerRole",
        hyperparameters={"max-depth": 4, "n-estimators": 3},
        metric_definitions=[{"Name": "train:accuracy", "Regex": "train_accuracy=([0-9.]+)"}],
        sagemaker_session=sagemaker_session,
    )
    estimator.fit({"train": TrainingInput(f"s3://{bucket}/titanic/train.csv")}, logs=True)
    printed = capsys.readouterr().out
    assert printed.count("training on 712 rows") == 1  # the script's output, printed once
    assert "with scikit-learn 1.2.2" in printed  # the framework version the estimator asked for
    assert printed.count("saved model") == 1
    description = estimator.latest_training_job.describe()
    assert description["TrainingJobStatus"] == "Completed"
    assert [m["MetricName"] for m in description["FinalMetricDataList"]] == ["train:accuracy"]
    model_data = estimator.model_data
    bucket_name, key = model_data[5:].split("/", 1)
    archive = s3.get_object(Bucket=bucket_name, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert tar.getnames() == ["model.joblib"]
    curve = estimator.training_job_analytics.dataframe()  # CloudWatch, by TrainingJobName
    assert list(curve["metric_name"].unique()) == ["train:accuracy"] and 0.7 < curve["value"].iloc[-1] <= 1


def test_script_that_hard_codes_opt_ml_model(
    sagemaker_session, server: ServerProcess, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    from sagemaker.estimator import Estimator
    from sagemaker.inputs import TrainingInput

    s3 = boto_client("s3", server.url)
    bucket = sagemaker_session.default_bucket()
    s3.put_object(Bucket=bucket, Key="titanic-raw/train.csv", Body=numeric_csv("train"))
    (tmp_path / "train.py").write_text(
        "rows = open('/opt/ml/input/data/training/train.csv').read().splitlines()\n"
        "open('/opt/ml/model/rows.txt', 'w').write(str(len(rows) - 1))\n"
    )
    estimator = Estimator(
        image_uri="683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
        entry_point="train.py",
        source_dir=str(tmp_path),
        instance_type="ml.m5.large",
        instance_count=1,
        role="arn:aws:iam::000000000000:role/SageMakerRole",
        sagemaker_session=sagemaker_session,
    )
    estimator.fit({"training": TrainingInput(f"s3://{bucket}/titanic-raw/train.csv")}, logs=False)
    bucket_name, key = estimator.model_data[5:].split("/", 1)
    archive = s3.get_object(Bucket=bucket_name, Key=key)["Body"].read()
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        assert tar.extractfile("rows.txt").read() == b"712"  # type: ignore[union-attr]


def test_failing_script_raises_with_its_error(sagemaker_session, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    from sagemaker.estimator import Estimator
    from sagemaker.exceptions import UnexpectedStatusException

    (tmp_path / "fail.py").write_text(
        "import sys\nprint('about to fail')\nraise SystemExit('bad input shape (3, 4)')\n"
    )
    estimator = Estimator(
        image_uri="683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
        entry_point="fail.py",
        source_dir=str(tmp_path),
        instance_type="ml.m5.large",
        instance_count=1,
        role="arn:aws:iam::000000000000:role/SageMakerRole",
        sagemaker_session=sagemaker_session,
    )
    with pytest.raises(UnexpectedStatusException, match=r"bad input shape \(3, 4\)"):
        estimator.fit(logs=False)
