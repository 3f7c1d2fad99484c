"""Errors that say what happened, against a real server: a user's mistake fails the job with
SageMaker's ``ClientError:`` or ``AlgorithmError:`` and a FailureReason that names no host path;
a request past a site quota answers ``ResourceLimitExceeded`` at once (boto3 and the SDK); a
server whose jobs run unsandboxed says so at start and in each job's log."""

from __future__ import annotations

import contextlib
import io
import json
import sys
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

import shipyard
from shipyard.server import ServerProcess
from tests._support import boto_client

ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"
SKLEARN_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
BUCKET = "job-errors"


def _source(s3: Any, files: dict[str, str]) -> str:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(text.encode())
            tar.addfile(info, io.BytesIO(text.encode()))
    key = f"code/{uuid.uuid4().hex}/sourcedir.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())
    return f"s3://{BUCKET}/{key}"


def _request(
    source: str,
    *,
    program: str = "train.py",
    hyperparameters: dict[str, str] | None = None,
    channels: dict[str, str] | None = None,
    count: int = 1,
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TrainingJobName": f"err-{uuid.uuid4().hex[:12]}",
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {
            "sagemaker_program": json.dumps(program),
            "sagemaker_submit_directory": json.dumps(source),
            **(hyperparameters or {}),
        },
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": count, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 300},
    }
    if channels:
        request["InputDataConfig"] = [
            {
                "ChannelName": name,
                "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": uri}},
            }
            for name, uri in channels.items()
        ]
    return request


def _wait(sm: Any, name: str, timeout: float = 240.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        description = sm.describe_training_job(TrainingJobName=name)
        if description["TrainingJobStatus"] in ("Completed", "Failed", "Stopped"):
            return description
        if time.monotonic() > deadline:
            raise AssertionError(f"{name} still {description['TrainingJobStatus']} after {timeout} s")
        time.sleep(0.05)


def _host_paths(reason: str, data_dir: Path) -> list[str]:
    """What in ``reason`` names the host: the data dir, root's home, a virtual environment, the
    server's Python."""
    found = [p for p in (str(data_dir), str(data_dir.resolve()), "/root", ".venv", sys.prefix) if p in reason]
    return found + [p for p in ("/tmp/", "/home/") if p in reason]


@pytest.fixture(scope="module")
def clients(server: ServerProcess) -> tuple[Any, Any]:
    s3 = boto_client("s3", server.url)
    with contextlib.suppress(ClientError):
        s3.create_bucket(Bucket=BUCKET)
    return boto_client("sagemaker", server.url), s3


# A user's mistakes: (what, the job's files or source, how the request differs, FailureReason prefix,
# what the reason must say).
MISTAKES: list[tuple[str, dict[str, Any], str, str]] = [
    (
        "a script that raises in a library",
        {
            "files": {
                "train.py": "from sklearn.linear_model import LogisticRegression as L\nL(C=-1).fit([[0], [1]], [0, 1])\n"
            }
        },
        "AlgorithmError: ExecuteUserScriptError:",
        "The 'C' parameter of LogisticRegression must be a float",
    ),
    (
        "a bad hyperparameter",
        {
            "files": {
                "train.py": "import argparse\np = argparse.ArgumentParser()\np.add_argument('--epochs', type=int)\np.parse_args()\n"
            },
            "hyperparameters": {"epochs": "ten"},
        },
        "AlgorithmError: ExecuteUserScriptError:",
        "argument --epochs: invalid int value: 'ten'",
    ),
    (
        "a missing entry point file",
        {"files": {"train.py": "print('hi')\n"}, "program": "missing.py"},
        "ClientError:",
        "Entry point 'missing.py' is not in the source directory",
    ),
    (
        "a missing input channel",
        {"files": {"train.py": "print('hi')\n"}, "channels": {"train": f"s3://{BUCKET}/nothing/here/"}},
        "ClientError:",
        f"No objects found under s3://{BUCKET}/nothing/here/ for channel 'train'",
    ),
    (
        "a missing S3 object",
        {"source": f"s3://{BUCKET}/missing/sourcedir.tar.gz"},
        "ClientError:",
        "The specified key does not exist: 'missing/sourcedir.tar.gz'",
    ),
    (
        "a missing bucket",
        {"source": "s3://no-such-bucket-for-errors/sourcedir.tar.gz"},
        "ClientError:",
        "The specified bucket does not exist: 'no-such-bucket-for-errors'",
    ),
    (
        "requirements that cannot be installed",
        {
            "files": {
                "train.py": "print('hi')\n",
                "requirements.txt": "no-such-package-shipyard-errors==1.0\n",
            }
        },
        "ClientError:",
        "no-such-package-shipyard-errors",
    ),
]


def test_a_users_mistakes_fail_as_client_or_algorithm_errors_without_host_paths(
    server: ServerProcess, clients: tuple[Any, Any]
) -> None:
    sm, s3 = clients
    names = {}
    for what, job, _, _ in MISTAKES:  # all at once: they run side by side
        source = job.get("source") or _source(s3, job["files"])
        request = _request(
            source,
            program=job.get("program", "train.py"),
            hyperparameters=job.get("hyperparameters"),
            channels=job.get("channels"),
        )
        sm.create_training_job(**request)
        names[what] = request["TrainingJobName"]
    for what, _, prefix, says in MISTAKES:
        description = _wait(sm, names[what])
        reason = description.get("FailureReason", "")
        assert description["TrainingJobStatus"] == "Failed", what
        assert reason.startswith(prefix), (what, reason)
        assert says in reason, (what, reason)
        assert _host_paths(reason, server.data_dir) == [], (what, reason)
    traceback = sm.describe_training_job(TrainingJobName=names["a script that raises in a library"])
    assert 'Command "python /opt/ml/code/train.py"' in traceback["FailureReason"]  # the job's own paths


def test_a_million_instances_is_refused_at_once_through_boto3(clients: tuple[Any, Any]) -> None:
    sm, s3 = clients
    request = _request(_source(s3, {"train.py": "print('hi')\n"}), count=1_000_000)
    with pytest.raises(ClientError) as refused:
        sm.create_training_job(**request)
    error = refused.value.response["Error"]
    assert (refused.value.response["ResponseMetadata"]["HTTPStatusCode"], error["Code"]) == (
        400,
        "ResourceLimitExceeded",
    )
    assert error["Message"].startswith(
        "The account-level service limit 'Number of instances per training job' is 20 Instances, with "
        "current utilization of 0 Instances and a request delta of 1000000 Instances."
    )
    with pytest.raises(ClientError, match=r"ResourceNotFound|ValidationException"):
        sm.describe_training_job(TrainingJobName=request["TrainingJobName"])
    # The scheduler is not wedged: a job created next runs to its end.
    ok = _request(_source(s3, {"train.py": "print('fine')\n"}))
    sm.create_training_job(**ok)
    assert _wait(sm, ok["TrainingJobName"])["TrainingJobStatus"] == "Completed"


def test_a_tuning_job_past_its_parallel_limit_is_refused_through_boto3(clients: tuple[Any, Any]) -> None:
    sm, s3 = clients
    definition = _request(_source(s3, {"train.py": "print('loss=1')\n"}))
    with pytest.raises(ClientError) as refused:
        sm.create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=f"err-{uuid.uuid4().hex[:12]}",
            HyperParameterTuningJobConfig={
                "Strategy": "Random",
                "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "loss"},
                "ResourceLimits": {"MaxNumberOfTrainingJobs": 20, "MaxParallelTrainingJobs": 11},
                "ParameterRanges": {
                    "ContinuousParameterRanges": [{"Name": "lr", "MinValue": "0.1", "MaxValue": "1"}]
                },
            },
            TrainingJobDefinition={
                "StaticHyperParameters": definition["HyperParameters"],
                "AlgorithmSpecification": {
                    **definition["AlgorithmSpecification"],
                    "MetricDefinitions": [{"Name": "loss", "Regex": "loss=([0-9.]+)"}],
                },
                "RoleArn": ROLE,
                "OutputDataConfig": definition["OutputDataConfig"],
                "ResourceConfig": definition["ResourceConfig"],
                "StoppingCondition": definition["StoppingCondition"],
            },
        )
    assert refused.value.response["Error"]["Code"] == "ResourceLimitExceeded"
    assert (
        "'Number of parallel training jobs per hyperparameter tuning job' is 10 Training jobs"
        in refused.value.response["Error"]["Message"]
    )


def test_a_million_instances_is_refused_at_once_through_the_sdk(
    server: ServerProcess, tmp_path: Path
) -> None:
    (tmp_path / "train.py").write_text("print('hi')\n")
    estimator = shipyard.Estimator(
        tmp_path / "train.py", instance_count=1_000_000, connection=shipyard.connect(server.url)
    )
    with pytest.raises(ClientError) as refused:
        estimator.fit(show=False)
    assert refused.value.response["Error"]["Code"] == "ResourceLimitExceeded"
    assert "request delta of 1000000 Instances" in refused.value.response["Error"]["Message"]


def test_an_unsandboxed_server_says_so_at_start_and_in_each_jobs_log(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    with ServerProcess(data_dir, env={"SHIPYARD_SANDBOX": "off"}) as unsandboxed:
        started = [line for line in unsandboxed.log_tail(200).splitlines() if "Jobs run unsandboxed" in line]
        assert len(started) == 1 and 'sandbox = "off" is set' in started[0]
        sm, s3 = boto_client("sagemaker", unsandboxed.url), boto_client("s3", unsandboxed.url)
        s3.create_bucket(Bucket=BUCKET)
        script = "import os\nopen(os.path.join(os.environ['SM_INPUT_DIR'], 'missing.csv'))\n"
        request = _request(_source(s3, {"train.py": script}))
        sm.create_training_job(**request)
        description = _wait(sm, request["TrainingJobName"])
        reason = description["FailureReason"]
        # The job saw its folder under the data dir; its FailureReason names it as /opt/ml.
        assert reason.startswith("AlgorithmError: ExecuteUserScriptError:"), reason
        assert "No such file or directory: '/opt/ml/input/missing.csv'" in reason, reason
        assert _host_paths(reason, data_dir) == [], reason
        logs = boto_client("logs", unsandboxed.url).filter_log_events(
            logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{request['TrainingJobName']}/"
        )
        assert any("running unsandboxed" in e["message"] for e in logs["events"])
