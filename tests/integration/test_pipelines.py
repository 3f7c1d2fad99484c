"""Pipeline definitions through boto3: what fails at the start and why, parameters, parallelism and
dependencies, retry policies, stop and retry, a server restart mid-execution, and the Tuning,
Model and Transform step types."""

from __future__ import annotations

import contextlib
import io
import json
import os
import signal
import tarfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

import httpx
import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from tests._support import boto_client
from tests._titanic import numeric_csv
from tests.integration.test_training import ROLE, SKLEARN_IMAGE

BUCKET = "pipeline-tests"
XGBOOST_IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-xgboost:1.7-1"

# Waits for a file named "go" in its job's config folder (the test writes it), then saves a model.
WAIT_FOR_GO = """
import os, sys, time
print("started", sys.argv[1:], flush=True)
while not os.path.exists(os.environ["SM_INPUT_CONFIG_DIR"] + "/go"):
    time.sleep(0.02)
open(os.environ["SM_MODEL_DIR"] + "/model.txt", "w").write("ok")
"""

SLEEP = """
import sys, time
print("args", sys.argv[1:], flush=True)
time.sleep(1.5)
"""


@pytest.fixture(scope="module")
def clients(server: ServerProcess) -> tuple[Any, Any]:
    s3 = boto_client("s3", server.url)
    with contextlib.suppress(ClientError):
        s3.create_bucket(Bucket=BUCKET)
    return boto_client("sagemaker", server.url), s3


def _training(s3: Any, script: str, *, hyperparameters: dict[str, Any] | None = None) -> dict[str, Any]:
    """A CreateTrainingJob request without its name: a Training step's Arguments."""
    key = f"code/{uuid.uuid4().hex}/sourcedir.tar.gz"
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        info = tarfile.TarInfo("train.py")
        info.size = len(script.encode())
        tar.addfile(info, io.BytesIO(script.encode()))
    s3.put_object(Bucket=BUCKET, Key=key, Body=buffer.getvalue())
    source = f"s3://{BUCKET}/{key}"
    return {
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": SKLEARN_IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": json.dumps(source),
            **(hyperparameters or {}),
        },
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
    }


def _definition(steps: list[dict[str, Any]], parameters: list[dict[str, Any]] | None = None) -> str:
    return json.dumps({"Version": "2020-12-01", "Parameters": parameters or [], "Steps": steps})


def _pipeline(sm: Any, definition: str) -> str:
    name = f"p-{uuid.uuid4().hex[:10]}"
    sm.create_pipeline(PipelineName=name, PipelineDefinition=definition, RoleArn=ROLE)
    return name


def _wait(sm: Any, arn: str, timeout: float = 120.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (found := sm.describe_pipeline_execution(PipelineExecutionArn=arn))["PipelineExecutionStatus"] in (
        "Executing",
        "Stopping",
    ):
        assert time.monotonic() < deadline, f"{arn} still {found['PipelineExecutionStatus']}"
        time.sleep(0.05)
    return found  # type: ignore[no-any-return]


def _steps(sm: Any, arn: str) -> dict[str, dict[str, Any]]:
    return {
        s["StepName"]: s
        for s in sm.list_pipeline_execution_steps(PipelineExecutionArn=arn)["PipelineExecutionSteps"]
    }


def _job_of(step: dict[str, Any]) -> str:
    return str(step["Metadata"]["TrainingJob"]["Arn"]).rsplit("/", 1)[1]


def _running_job(sm: Any, arn: str, step: str, *, not_: str | None = None, timeout: float = 60) -> str:
    """The training job a step runs, once it runs (and is not ``not_``)."""
    deadline = time.monotonic() + timeout
    while True:
        found = _steps(sm, arn).get(step)
        if found and "TrainingJob" in found.get("Metadata", {}) and _job_of(found) != not_:
            name = _job_of(found)
            if sm.describe_training_job(TrainingJobName=name)["SecondaryStatus"] == "Training":
                return name
        assert time.monotonic() < deadline, f"step {step} never ran a job"
        time.sleep(0.05)


def _go(data_dir: Path, job: str) -> None:
    [config] = data_dir.glob(f"jobs/{job}/attempt-*/algo-1/ml/input/config")
    (config / "go").write_text("")


def test_what_cannot_run_fails_the_execution_at_its_start_naming_the_step_and_path(
    clients: tuple[Any, Any],
) -> None:
    sm, s3 = clients
    train = {"Name": "train", "Type": "Training", "Arguments": _training(s3, SLEEP)}
    cases = [
        (
            [train, {"Name": "notify", "Type": "Lambda", "Arguments": {}}],
            ["Step 'notify' (Steps[1])", "Type 'Lambda'", "does not run"],
        ),
        (
            [
                train,
                {
                    "Name": "evaluate",
                    "Type": "Training",
                    "Arguments": {
                        **_training(s3, SLEEP),
                        "HyperParameters": {"model": {"Get": "Steps.tain.ModelArtifacts.S3ModelArtifacts"}},
                    },
                },
            ],
            ["Step 'evaluate'", "Steps[1].Arguments.HyperParameters.model", "there is no step 'tain'"],
        ),
        (
            [
                train,
                {
                    "Name": "evaluate",
                    "Type": "Training",
                    "Arguments": {
                        **_training(s3, SLEEP),
                        "HyperParameters": {"model": {"Get": "Steps.train.ModelArtifact.S3ModelArtifacts"}},
                    },
                },
            ],
            ["Steps[1].Arguments.HyperParameters.model", "no member 'ModelArtifact'"],
        ),
        (
            [{**train, "DependsOn": ["later"]}, {**train, "Name": "later", "DependsOn": ["train"]}],
            ["cycle", "train → later → train"],
        ),
    ]
    for steps, expected in cases:
        arn = sm.start_pipeline_execution(PipelineName=_pipeline(sm, _definition(steps)))[
            "PipelineExecutionArn"
        ]
        described = sm.describe_pipeline_execution(PipelineExecutionArn=arn)  # failed already
        assert described["PipelineExecutionStatus"] == "Failed"
        for text in expected:
            assert text in described["FailureReason"], (text, described["FailureReason"])
        assert _steps(sm, arn) == {}  # nothing ran

    name = _pipeline(sm, _definition([train], [{"Name": "Epochs", "Type": "Integer", "DefaultValue": 1}]))
    for params, text in (
        ([{"Name": "Epoch", "Value": "2"}], "has no parameter 'Epoch'"),
        ([{"Name": "Epochs", "Value": "two"}], "'two' is not a integer"),
    ):
        with pytest.raises(ClientError, match=text) as caught:
            sm.start_pipeline_execution(PipelineName=name, PipelineParameters=params)
        assert caught.value.response["Error"]["Code"] == "ValidationException"
    with pytest.raises(ClientError, match="already exists") as caught:
        sm.create_pipeline(PipelineName=name, PipelineDefinition=_definition([train]), RoleArn=ROLE)
    assert caught.value.response["Error"]["Code"] == "ValidationException"  # what upsert() relies on
    with pytest.raises(ClientError, match="not JSON"):
        sm.create_pipeline(PipelineName=f"{name}-x", PipelineDefinition="{steps:", RoleArn=ROLE)
    with pytest.raises(ClientError) as caught:
        sm.describe_pipeline(PipelineName=f"{name}-missing")
    assert caught.value.response["Error"]["Code"] == "ResourceNotFound"
    assert sm.describe_pipeline(PipelineName=name)["PipelineDefinition"] == _definition(
        [train], [{"Name": "Epochs", "Type": "Integer", "DefaultValue": 1}]
    )  # the refused calls changed nothing


def test_parameters_dependencies_and_parallelism(clients: tuple[Any, Any]) -> None:
    sm, s3 = clients
    parameters = [
        {"Name": "Epochs", "Type": "Integer", "DefaultValue": 1},
        {"Name": "Rate", "Type": "Float", "DefaultValue": 0.5},
    ]
    hps = {
        "epochs": {"Get": "Parameters.Epochs"},
        "rate": {"Get": "Parameters.Rate"},
        "run": {"Std:Join": {"On": "-", "Values": ["run", {"Get": "Execution.PipelineExecutionId"}]}},
    }
    steps = [
        {"Name": "a", "Type": "Training", "Arguments": _training(s3, SLEEP, hyperparameters=hps)},
        {"Name": "b", "Type": "Training", "Arguments": _training(s3, SLEEP)},
        {
            "Name": "c",
            "Type": "Training",
            "Arguments": _training(
                s3, SLEEP, hyperparameters={"from": {"Get": "Steps.a.ModelArtifacts.S3ModelArtifacts"}}
            ),
            "DependsOn": ["b"],
        },
    ]
    name = _pipeline(sm, _definition(steps, parameters))
    one_at_a_time = sm.start_pipeline_execution(
        PipelineName=name,
        PipelineParameters=[{"Name": "Epochs", "Value": "3"}],
        ParallelismConfiguration={"MaxParallelExecutionSteps": 1},
    )["PipelineExecutionArn"]
    together = sm.start_pipeline_execution(PipelineName=name)["PipelineExecutionArn"]
    for arn in (one_at_a_time, together):
        assert _wait(sm, arn)["PipelineExecutionStatus"] == "Succeeded"

    serial = _steps(sm, one_at_a_time)
    first, second = sorted((serial["a"], serial["b"]), key=lambda s: s["StartTime"])
    assert second["StartTime"] >= first["EndTime"]  # one step at a time
    assert serial["c"]["StartTime"] >= max(serial["a"]["EndTime"], serial["b"]["EndTime"])
    parallel = _steps(sm, together)
    assert max(parallel["a"]["StartTime"], parallel["b"]["StartTime"]) < min(
        parallel["a"]["EndTime"], parallel["b"]["EndTime"]
    )  # a and b ran at the same time

    job = sm.describe_training_job(TrainingJobName=_job_of(serial["a"]))
    execution_id = one_at_a_time.rsplit("/", 1)[1]
    assert job["HyperParameters"]["epochs"] == "3"  # the parameter given, as a hyperparameter string
    assert job["HyperParameters"]["rate"] == "0.5"  # the default
    assert job["HyperParameters"]["run"] == f"run-{execution_id}"
    assert job["TrainingJobName"].startswith(f"pipelines-{execution_id}-a-")
    later = sm.describe_training_job(TrainingJobName=_job_of(serial["c"]))
    assert later["HyperParameters"]["from"] == job["ModelArtifacts"]["S3ModelArtifacts"]
    listed = sm.list_pipeline_parameters_for_execution(PipelineExecutionArn=one_at_a_time)[
        "PipelineParameters"
    ]
    assert {p["Name"]: p["Value"] for p in listed} == {"Epochs": "3", "Rate": "0.5"}
    executions = sm.list_pipeline_executions(PipelineName=name)["PipelineExecutionSummaries"]
    assert [e["PipelineExecutionArn"] for e in executions] == [together, one_at_a_time]


def test_a_lost_instance_is_retried_by_the_steps_retry_policy_and_a_failed_script_is_not(
    clients: tuple[Any, Any], server: ServerProcess
) -> None:
    sm, s3 = clients
    retry = [{"ExceptionType": ["SageMaker.JOB_INTERNAL_ERROR"], "IntervalSeconds": 1, "MaxAttempts": 2}]
    steps = [
        {
            "Name": "train",
            "Type": "Training",
            "Arguments": _training(s3, WAIT_FOR_GO),
            "RetryPolicies": retry,
        },
        {
            "Name": "broken",
            "Type": "Training",
            "Arguments": _training(s3, "raise SystemExit('bad input')"),
            "RetryPolicies": retry,
        },
    ]
    name = _pipeline(sm, _definition(steps))
    arn = sm.start_pipeline_execution(PipelineName=name)["PipelineExecutionArn"]
    lost = _running_job(sm, arn, "train")
    [status] = server.data_dir.glob(f"jobs/{lost}/attempt-*/algo-1/status.json")
    os.kill(json.loads(status.read_text())["agent_pid"], signal.SIGKILL)  # the instance is lost
    again = _running_job(sm, arn, "train", not_=lost)
    _go(server.data_dir, again)
    described = _wait(sm, arn)
    steps_run = _steps(sm, arn)
    assert steps_run["train"]["StepStatus"] == "Succeeded"
    assert steps_run["train"]["AttemptCount"] == 2
    assert sm.describe_training_job(TrainingJobName=lost)["FailureReason"].startswith("InternalServerError")
    # A script's own failure is not what SageMaker's retry policies cover: it failed once.
    assert steps_run["broken"]["StepStatus"] == "Failed"
    assert steps_run["broken"]["AttemptCount"] == 1
    assert "bad input" in steps_run["broken"]["FailureReason"]
    assert described["PipelineExecutionStatus"] == "Failed"
    assert "'broken'" in described["FailureReason"]
    native = httpx.get(f"{server.url}/api/v1/pipelines/{name}/executions/{arn.rsplit('/', 1)[1]}").json()
    train = next(s for s in native["steps"] if s["name"] == "train")
    assert train["jobs"] == [lost, again]  # both attempts, and both are paid for
    assert Decimal(native["cost_usd"]) >= Decimal(train["cost_usd"]) > 0


def test_stop_stops_the_running_steps_and_retry_runs_them_again(
    clients: tuple[Any, Any], server: ServerProcess
) -> None:
    sm, s3 = clients
    steps = [
        {"Name": "slow", "Type": "Training", "Arguments": _training(s3, WAIT_FOR_GO)},
        {"Name": "after", "Type": "Training", "Arguments": _training(s3, SLEEP), "DependsOn": ["slow"]},
    ]
    arn = sm.start_pipeline_execution(PipelineName=_pipeline(sm, _definition(steps)))["PipelineExecutionArn"]
    first = _running_job(sm, arn, "slow")
    sm.stop_pipeline_execution(PipelineExecutionArn=arn)
    assert _wait(sm, arn)["PipelineExecutionStatus"] == "Stopped"
    assert _steps(sm, arn)["slow"]["StepStatus"] == "Stopped"
    assert sm.describe_training_job(TrainingJobName=first)["TrainingJobStatus"] == "Stopped"
    assert "after" not in _steps(sm, arn)
    with pytest.raises(ClientError, match="cannot be stopped"):
        sm.stop_pipeline_execution(PipelineExecutionArn=arn)

    sm.retry_pipeline_execution(PipelineExecutionArn=arn)
    second = _running_job(sm, arn, "slow", not_=first)
    _go(server.data_dir, second)
    assert _wait(sm, arn)["PipelineExecutionStatus"] == "Succeeded"
    final = _steps(sm, arn)
    assert (final["slow"]["StepStatus"], final["slow"]["AttemptCount"]) == ("Succeeded", 2)
    assert final["after"]["StepStatus"] == "Succeeded"


def test_a_server_restart_resumes_an_execution_where_it_was(tmp_path: Path) -> None:
    from shipyard.server import free_port

    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir).start()
    try:
        sm, s3 = boto_client("sagemaker", server.url), boto_client("s3", server.url)
        s3.create_bucket(Bucket=BUCKET)
        steps = [
            {"Name": "first", "Type": "Training", "Arguments": _training(s3, WAIT_FOR_GO)},
            {
                "Name": "second",
                "Type": "Training",
                "Arguments": _training(
                    s3,
                    SLEEP,
                    hyperparameters={"model": {"Get": "Steps.first.ModelArtifacts.S3ModelArtifacts"}},
                ),
            },
        ]
        arn = sm.start_pipeline_execution(PipelineName=_pipeline(sm, _definition(steps)))[
            "PipelineExecutionArn"
        ]
        job = _running_job(sm, arn, "first")
    finally:
        server.kill()
    _go(data_dir, job)  # the job finishes while no server watches
    restarted = ServerProcess(data_dir, port=free_port()).start()
    try:
        sm = boto_client("sagemaker", restarted.url)
        assert _wait(sm, arn)["PipelineExecutionStatus"] == "Succeeded"
        steps_run = _steps(sm, arn)
        assert _job_of(steps_run["first"]) == job  # followed, not started again
        assert steps_run["first"]["AttemptCount"] == 1
        assert steps_run["second"]["StepStatus"] == "Succeeded"
    finally:
        restarted.stop()


def test_tuning_model_and_transform_steps(clients: tuple[Any, Any]) -> None:
    sm, s3 = clients
    prefix = f"titanic-{uuid.uuid4().hex[:6]}"
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/train/train.csv", Body=numeric_csv("train", header=False))
    features = "\n".join(
        line.split(",", 1)[1] for line in numeric_csv("test", header=False).decode().splitlines()
    )
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/score/test.csv", Body=features.encode())
    channel = {
        "ChannelName": "train",
        "ContentType": "text/csv",
        "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{prefix}/train"}},
    }
    tuning = {
        "HyperParameterTuningJobConfig": {
            "Strategy": "Random",
            "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "train:logloss"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 2},
            "ParameterRanges": {
                "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "2", "MaxValue": "4"}]
            },
        },
        "TrainingJobDefinition": {
            "AlgorithmSpecification": {"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"},
            "StaticHyperParameters": {
                "objective": "binary:logistic",
                "num_round": "5",
                "eval_metric": "logloss",
            },
            "RoleArn": ROLE,
            "InputDataConfig": [channel],
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/{prefix}/models"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 120},
        },
    }
    best = {"Get": "Steps.tune.TrainingJobSummaries[0].TrainingJobName"}
    steps = [
        {"Name": "tune", "Type": "Tuning", "Arguments": tuning},
        {
            "Name": "model",
            "Type": "Model",
            "Arguments": {
                "ExecutionRoleArn": ROLE,
                "PrimaryContainer": {
                    "Image": XGBOOST_IMAGE,
                    "ModelDataUrl": {
                        "Std:Join": {
                            "On": "/",
                            "Values": ["s3:/", BUCKET, prefix, "models", best, "output", "model.tar.gz"],
                        }
                    },
                },
            },
        },
        {
            "Name": "score",
            "Type": "Transform",
            "Arguments": {
                "ModelName": {"Get": "Steps.model.ModelName"},
                "TransformInput": {
                    "DataSource": {
                        "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/{prefix}/score"}
                    },
                    "ContentType": "text/csv",
                    "SplitType": "Line",
                },
                "TransformOutput": {"S3OutputPath": f"s3://{BUCKET}/{prefix}/scores"},
                "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": 1},
            },
        },
    ]
    arn = sm.start_pipeline_execution(PipelineName=_pipeline(sm, _definition(steps)))["PipelineExecutionArn"]
    described = _wait(sm, arn, timeout=180)
    assert described["PipelineExecutionStatus"] == "Succeeded", described.get("FailureReason")
    steps_run = _steps(sm, arn)
    tuned = sm.describe_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=steps_run["tune"]["Metadata"]["TuningJob"]["Arn"].rsplit("/", 1)[1]
    )
    model = sm.describe_model(ModelName=steps_run["model"]["Metadata"]["Model"]["Arn"].rsplit("/", 1)[1])
    assert tuned["BestTrainingJob"]["TrainingJobName"] in model["PrimaryContainer"]["ModelDataUrl"]
    assert ":transform-job/" in steps_run["score"]["Metadata"]["TransformJob"]["Arn"]
    output = s3.get_object(Bucket=BUCKET, Key=f"{prefix}/scores/test.csv.out")["Body"].read().decode()
    scores = output.replace(",", " ").split()  # the XGBoost container answers a batch as one CSV row
    assert len(scores) == len(features.splitlines())
    assert all(0.0 <= float(s) <= 1.0 for s in scores)
