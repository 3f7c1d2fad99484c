"""Hyperparameter tuning jobs through the SageMaker API: the SDK's HyperparameterTuner, Grid,
Hyperband, several definitions, early stopping, warm start, failures, stop, restart."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from tests._support import boto_client
from tests.integration.test_training import BUCKET, ROLE, SKLEARN_IMAGE, _upload_source

SCRIPT = """
import argparse, math
p = argparse.ArgumentParser()
p.add_argument("-x", "--x", type=float, default=0.0)
p.add_argument("--depth", type=int, default=1)
p.add_argument("--kind", default="a")
a, _ = p.parse_known_args()
score = 1 - (a.x - 0.3) ** 2 + (0.1 if a.kind == "b" else 0) + 0.01 * a.depth
if a.x > 0.95:
    raise SystemExit("x too large")
print(f"score={score:.6f}")
"""


@pytest.fixture(scope="module")
def tuning_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    with ServerProcess(tmp_path_factory.mktemp("tuning-server")) as server:
        boto_client("s3", server.url).create_bucket(Bucket=BUCKET)
        yield server


def _wait_tuning(sm: Any, name: str, timeout: float = 300) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while True:
        description = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
        if description["HyperParameterTuningJobStatus"] in ("Completed", "Failed", "Stopped"):
            return description
        assert time.monotonic() < deadline, f"{name} still {description['HyperParameterTuningJobStatus']}"
        time.sleep(0.05)


def _definition(source: str | None) -> dict[str, Any]:
    """A TrainingJobDefinition running SCRIPT-like code (from ``source``) with the "score" metric."""
    definition: dict[str, Any] = {
        "AlgorithmSpecification": {
            "TrainingImage": SKLEARN_IMAGE,
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": "score", "Regex": "score=([0-9.]+)"}],
        },
        "RoleArn": ROLE,
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/tuning"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
    }
    if source is not None:
        definition["StaticHyperParameters"] = {
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": f'"{source}"',
        }
    return definition


def _create_tuning(
    sm: Any,
    s3: Any,
    *,
    strategy: str,
    ranges: dict[str, Any],
    max_jobs: int,
    parallel: int,
    script: str = SCRIPT,
    name: str | None = None,
    early_stopping: str = "Off",
    tags: list[dict[str, str]] | None = None,
) -> str:
    name = name or f"tune-{uuid.uuid4().hex[:8]}"
    source = _upload_source(s3, {"train.py": script})
    sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name,
        HyperParameterTuningJobConfig={
            "Strategy": strategy,
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "score"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": max_jobs, "MaxParallelTrainingJobs": parallel},
            "ParameterRanges": ranges,
            "TrainingJobEarlyStoppingType": early_stopping,
        },
        TrainingJobDefinition=_definition(source),
        Tags=tags or [],
    )
    return name


def test_sdk_hyperparameter_tuner_bayesian(
    tuning_server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import boto3
    import sagemaker
    from sagemaker.estimator import Estimator
    from sagemaker.tuner import (
        CategoricalParameter,
        ContinuousParameter,
        HyperparameterTuner,
        IntegerParameter,
    )

    monkeypatch.setenv("AWS_ENDPOINT_URL", tuning_server.url)
    session = sagemaker.Session(
        boto_session=boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"),
        sagemaker_client=boto_client("sagemaker", tuning_server.url),
        default_bucket="sdk-tuning",
    )
    (tmp_path / "train.py").write_text(SCRIPT)
    estimator = Estimator(
        image_uri=SKLEARN_IMAGE,
        entry_point="train.py",
        source_dir=str(tmp_path),
        role=ROLE,
        instance_count=1,
        instance_type="ml.m5.large",
        sagemaker_session=session,
    )
    tuner = HyperparameterTuner(
        estimator,
        objective_metric_name="score",
        hyperparameter_ranges={
            "x": ContinuousParameter(0.0, 1.0),
            "depth": IntegerParameter(1, 5),
            "kind": CategoricalParameter(["a", "b"]),
        },
        metric_definitions=[{"Name": "score", "Regex": "score=([0-9.]+)"}],
        objective_type="Maximize",
        strategy="Bayesian",
        max_jobs=6,
        max_parallel_jobs=2,
    )
    tuner.fit(wait=True)
    name = tuner.latest_tuning_job.name
    sm = boto_client("sagemaker", tuning_server.url)
    description = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    assert description["HyperParameterTuningJobStatus"] == "Completed"
    counters = description["TrainingJobStatusCounters"]
    assert counters["Completed"] + counters["NonRetryableError"] == 6
    trials = [
        s
        for page in sm.get_paginator("list_training_jobs_for_hyper_parameter_tuning_job").paginate(
            HyperParameterTuningJobName=name, SortBy="FinalObjectiveMetricValue", SortOrder="Descending"
        )
        for s in page["TrainingJobSummaries"]
    ]
    assert len(trials) == 6 and all(t["TrainingJobName"].startswith(f"{name}-") for t in trials)
    best = description["BestTrainingJob"]
    assert tuner.best_training_job() == best["TrainingJobName"] == trials[0]["TrainingJobName"]
    values = [
        t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        for t in trials
        if "FinalHyperParameterTuningJobObjectiveMetric" in t
    ]
    assert values == sorted(values, reverse=True)
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == max(values)
    tuned = best["TunedHyperParameters"]
    assert set(tuned) == {"x", "depth", "kind"} and tuned["kind"] in ("a", "b")
    # the objective the script computed from the values it was given (x is passed as "-x")
    expected = (
        1 - (float(tuned["x"]) - 0.3) ** 2 + (0.1 if tuned["kind"] == "b" else 0) + 0.01 * int(tuned["depth"])
    )
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == pytest.approx(expected, abs=1e-5)
    trial_job = sm.describe_training_job(TrainingJobName=best["TrainingJobName"])
    assert trial_job["TuningJobArn"] == description["HyperParameterTuningJobArn"]
    assert trial_job["HyperParameters"]["x"] == tuned["x"]
    from decimal import Decimal

    import httpx

    native = httpx.get(f"{tuning_server.url}/api/v1/tuning-jobs/{name}").json()
    assert native["best_training_job"] == best["TrainingJobName"] and len(native["trials"]) == 6
    assert Decimal(native["cost_usd"]) == sum(Decimal(t["cost_usd"]) for t in native["trials"]) > 0


def test_grid_tries_every_combination_once(tuning_server: ServerProcess) -> None:
    sm, s3 = boto_client("sagemaker", tuning_server.url), boto_client("s3", tuning_server.url)
    name = _create_tuning(
        sm,
        s3,
        strategy="Grid",
        max_jobs=50,
        parallel=2,
        ranges={
            "IntegerParameterRanges": [{"Name": "depth", "MinValue": "1", "MaxValue": "3"}],
            "CategoricalParameterRanges": [{"Name": "kind", "Values": ['"a"', '"b"']}],
        },
    )
    description = _wait_tuning(sm, name)
    assert description["HyperParameterTuningJobStatus"] == "Completed"
    trials = sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name, MaxResults=100
    )["TrainingJobSummaries"]
    points = sorted((t["TunedHyperParameters"]["depth"], t["TunedHyperParameters"]["kind"]) for t in trials)
    assert points == [(d, k) for d in ("1", "2", "3") for k in ("a", "b")]  # 6, not the 50 asked for
    assert description["BestTrainingJob"]["TunedHyperParameters"] == {"depth": "3", "kind": "b"}


def test_failing_trials_do_not_stop_the_search_but_all_failing_fails_it(tuning_server: ServerProcess) -> None:
    sm, s3 = boto_client("sagemaker", tuning_server.url), boto_client("s3", tuning_server.url)
    name = _create_tuning(
        sm,
        s3,
        strategy="Random",
        max_jobs=3,
        parallel=2,
        script="raise SystemExit('broken')",
        ranges={"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}]},
    )
    description = _wait_tuning(sm, name)
    assert description["HyperParameterTuningJobStatus"] == "Failed"
    assert "All 3 training jobs failed" in description["FailureReason"]
    assert description["TrainingJobStatusCounters"]["NonRetryableError"] == 3


def test_stop_stops_running_trials(tuning_server: ServerProcess) -> None:
    sm, s3 = boto_client("sagemaker", tuning_server.url), boto_client("s3", tuning_server.url)
    name = _create_tuning(
        sm,
        s3,
        strategy="Random",
        max_jobs=4,
        parallel=1,
        script="import time\ntime.sleep(600)",
        ranges={"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}]},
    )
    deadline = time.monotonic() + 30
    while not sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)[
        "TrainingJobSummaries"
    ]:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    sm.stop_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    description = _wait_tuning(sm, name)
    assert description["HyperParameterTuningJobStatus"] == "Stopped"
    assert description["TrainingJobStatusCounters"]["Stopped"] == 1, description["TrainingJobStatusCounters"]


@pytest.mark.parametrize(
    ("config_change", "named"),
    [
        ({"Strategy": "Hyperband"}, "Strategy Hyperband needs MaxResource"),
        (
            {
                "ParameterRanges": {
                    "ContinuousParameterRanges": [{"Name": "x", "MinValue": "2", "MaxValue": "1"}]
                }
            },
            "MinValue 2 is greater than MaxValue 1",
        ),
        (
            {
                "ParameterRanges": {
                    "ContinuousParameterRanges": [
                        {"Name": "x", "MinValue": "0", "MaxValue": "1", "ScalingType": "Logarithmic"}
                    ]
                }
            },
            "MinValue > 0",
        ),
        ({"HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "accuracy"}}, "'accuracy'"),
    ],
)
def test_bad_tuning_requests_are_refused(
    tuning_server: ServerProcess, config_change: dict[str, Any], named: str
) -> None:
    sm = boto_client("sagemaker", tuning_server.url)
    config = {
        "Strategy": "Bayesian",
        "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "score"},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 1},
        "ParameterRanges": {"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}]},
        **config_change,
    }
    with pytest.raises(ClientError) as exc:
        sm.create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName="bad-tuning",
            HyperParameterTuningJobConfig=config,
            TrainingJobDefinition=_definition(None),
        )
    assert exc.value.response["Error"]["Code"] == "ValidationException"
    assert named in exc.value.response["Error"]["Message"]


def test_builtin_xgboost_tuned_on_validation_auc(tuning_server: ServerProcess) -> None:
    from tests._titanic import numeric_csv
    from tests.integration.test_builtin_xgboost import XGBOOST_IMAGE

    sm, s3 = boto_client("sagemaker", tuning_server.url), boto_client("s3", tuning_server.url)
    s3.put_object(Bucket=BUCKET, Key="tune-xgb/train/train.csv", Body=numeric_csv("train", header=False))
    s3.put_object(
        Bucket=BUCKET, Key="tune-xgb/validation/validation.csv", Body=numeric_csv("test", header=False)
    )
    channels = [
        {
            "ChannelName": channel,
            "ContentType": "text/csv",
            "DataSource": {
                "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": f"s3://{BUCKET}/tune-xgb/{channel}/"}
            },
        }
        for channel in ("train", "validation")
    ]
    sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName="tune-builtin-xgb",
        HyperParameterTuningJobConfig={
            "Strategy": "Bayesian",
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "validation:auc"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 4, "MaxParallelTrainingJobs": 2},
            "ParameterRanges": {
                "IntegerParameterRanges": [{"Name": "max_depth", "MinValue": "2", "MaxValue": "6"}],
                "ContinuousParameterRanges": [
                    {"Name": "eta", "MinValue": "0.05", "MaxValue": "0.5", "ScalingType": "Logarithmic"}
                ],
            },
        },
        TrainingJobDefinition={
            "StaticHyperParameters": {
                "objective": "binary:logistic",
                "num_round": "20",
                "eval_metric": "auc",
            },
            "AlgorithmSpecification": {"TrainingImage": XGBOOST_IMAGE, "TrainingInputMode": "File"},
            "RoleArn": ROLE,
            "InputDataConfig": channels,
            "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/tuning"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 120},
        },
    )
    description = _wait_tuning(sm, "tune-builtin-xgb")
    assert description["HyperParameterTuningJobStatus"] == "Completed", description.get("FailureReason")
    best = description["BestTrainingJob"]
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["MetricName"] == "validation:auc"
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] > 0.8
    assert description["ObjectiveStatusCounters"]["Succeeded"] == 4


def test_a_restart_mid_tuning_loses_no_trial_and_duplicates_none(tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    server = ServerProcess(data_dir).start()
    try:
        sm, s3 = boto_client("sagemaker", server.url), boto_client("s3", server.url)
        s3.create_bucket(Bucket=BUCKET)
        name = _create_tuning(
            sm,
            s3,
            strategy="Bayesian",
            max_jobs=5,
            parallel=1,
            ranges={"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "0.9"}]},
        )
        deadline = time.monotonic() + 60
        while (
            len(
                sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)[
                    "TrainingJobSummaries"
                ]
            )
            < 2
        ):
            assert time.monotonic() < deadline, "the tuning job did not get going"
            time.sleep(0.05)
    finally:
        server.kill()
    from shipyard.server import free_port

    restarted = ServerProcess(data_dir, port=free_port()).start()
    try:
        sm = boto_client("sagemaker", restarted.url)
        description = _wait_tuning(sm, name)
        assert description["HyperParameterTuningJobStatus"] == "Completed", description.get("FailureReason")
        trials = sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name, MaxResults=100
        )["TrainingJobSummaries"]
        assert len(trials) == 5
        numbers = sorted(t["TrainingJobName"].rsplit("-", 2)[1] for t in trials)
        assert numbers == ["001", "002", "003", "004", "005"]
        all_jobs = [
            s["TrainingJobName"]
            for s in sm.list_training_jobs(NameContains=name, MaxResults=100)["TrainingJobSummaries"]
        ]
        assert sorted(all_jobs) == sorted(t["TrainingJobName"] for t in trials)  # no orphan trial
    finally:
        restarted.stop()


def test_early_stopping_stops_trials_worse_than_the_median(tuning_server: ServerProcess) -> None:
    sm, s3 = boto_client("sagemaker", tuning_server.url), boto_client("s3", tuning_server.url)
    script = """
import argparse, time
p = argparse.ArgumentParser(); p.add_argument("-x", type=float); a, _ = p.parse_known_args()
for epoch in range(12):
    print(f"epoch {epoch} score={(1 - abs(a.x - 0.3)) * (epoch + 1) / 12:.4f}", flush=True)
    time.sleep(0.15)
"""
    # Grid order is the listed order: three good trials first, then two clearly worse ones.
    name = _create_tuning(
        sm,
        s3,
        strategy="Grid",
        max_jobs=5,
        parallel=1,
        script=script,
        early_stopping="Auto",
        ranges={
            "CategoricalParameterRanges": [{"Name": "x", "Values": ["0.3", "0.32", "0.34", "0.9", "0.95"]}]
        },
    )
    sm_config = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    assert sm_config["HyperParameterTuningJobConfig"]["TrainingJobEarlyStoppingType"] == "Auto"
    description = _wait_tuning(sm, name)
    assert description["HyperParameterTuningJobStatus"] == "Completed", description.get("FailureReason")
    trials = {
        t["TunedHyperParameters"]["x"]: t
        for t in sm.list_training_jobs_for_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name, MaxResults=100
        )["TrainingJobSummaries"]
    }
    assert [trials[x]["TrainingJobStatus"] for x in ("0.3", "0.32", "0.34")] == ["Completed"] * 3
    assert [trials[x]["TrainingJobStatus"] for x in ("0.9", "0.95")] == ["Stopped"] * 2
    assert description["TrainingJobStatusCounters"]["Stopped"] == 2
    assert description["BestTrainingJob"]["TunedHyperParameters"] == {"x": "0.3"}


def test_warm_start_searches_from_the_parents_trials(tuning_server: ServerProcess) -> None:
    sm, s3 = boto_client("sagemaker", tuning_server.url), boto_client("s3", tuning_server.url)
    ranges = {"ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "0.9"}]}
    parent = _create_tuning(sm, s3, strategy="Random", max_jobs=4, parallel=2, ranges=ranges)
    assert _wait_tuning(sm, parent)["HyperParameterTuningJobStatus"] == "Completed"

    def child(warm: bool) -> list[str]:
        name = f"child-{uuid.uuid4().hex[:8]}"
        source = _upload_source(s3, {"train.py": SCRIPT})
        extra = (
            {
                "WarmStartConfig": {
                    "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": parent}],
                    "WarmStartType": "IdenticalDataAndAlgorithm",
                }
            }
            if warm
            else {}
        )
        sm.create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name,
            HyperParameterTuningJobConfig={
                "Strategy": "Bayesian",
                "RandomSeed": 7,
                "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "score"},
                "ResourceLimits": {"MaxNumberOfTrainingJobs": 1, "MaxParallelTrainingJobs": 1},
                "ParameterRanges": ranges,
            },
            TrainingJobDefinition=_definition(source),
            **extra,
        )
        description = _wait_tuning(sm, name)
        assert description["HyperParameterTuningJobStatus"] == "Completed"
        if warm:
            assert (
                description["WarmStartConfig"]["ParentHyperParameterTuningJobs"][0][
                    "HyperParameterTuningJobName"
                ]
                == parent
            )
        return [
            t["TunedHyperParameters"]["x"]
            for t in sm.list_training_jobs_for_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)[
                "TrainingJobSummaries"
            ]
        ]

    # Same seed, same first ask: only the parents' four trials can make the warm child choose differently.
    assert child(warm=True) != child(warm=False)
    with pytest.raises(ClientError) as exc:
        sm.create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName="orphan-child",
            HyperParameterTuningJobConfig={
                "Strategy": "Bayesian",
                "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "score"},
                "ResourceLimits": {"MaxNumberOfTrainingJobs": 1, "MaxParallelTrainingJobs": 1},
                "ParameterRanges": ranges,
            },
            TrainingJobDefinition=_definition(None),
            WarmStartConfig={
                "ParentHyperParameterTuningJobs": [{"HyperParameterTuningJobName": "no-such-parent"}],
                "WarmStartType": "TransferLearning",
            },
        )
    assert exc.value.response["Error"]["Code"] == "ResourceNotFound"
    assert "no-such-parent" in exc.value.response["Error"]["Message"]


EPOCHS_SCRIPT = """
import argparse, time
p = argparse.ArgumentParser()
p.add_argument("-x", type=float)
p.add_argument("--epochs", type=int)
p.add_argument("--offset", type=float, default=0.0)
a, _ = p.parse_known_args()
for epoch in range(a.epochs):
    print(f"epoch {epoch} score={a.offset + (1 - abs(a.x - 0.3)) * (epoch + 1) / a.epochs:.4f}", flush=True)
    time.sleep(0.1)
"""


def _summaries(sm: Any, name: str) -> list[dict[str, Any]]:
    return sm.list_training_jobs_for_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name, MaxResults=100
    )["TrainingJobSummaries"]


def test_hyperband_stops_trials_that_are_not_promoted(tuning_server: ServerProcess) -> None:
    sm, s3 = boto_client("sagemaker", tuning_server.url), boto_client("s3", tuning_server.url)
    logs = boto_client("logs", tuning_server.url)
    name = f"hyperband-{uuid.uuid4().hex[:8]}"
    definition = _definition(_upload_source(s3, {"train.py": EPOCHS_SCRIPT}))
    definition["StaticHyperParameters"]["epochs"] = "9"  # MaxResource, as SageMaker infers it
    sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name,
        HyperParameterTuningJobConfig={
            "Strategy": "Hyperband",
            "RandomSeed": 3,
            "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "score"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 6, "MaxParallelTrainingJobs": 1},
            "ParameterRanges": {
                "ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}]
            },
        },
        TrainingJobDefinition=definition,
    )
    description = _wait_tuning(sm, name)
    assert description["HyperParameterTuningJobStatus"] == "Completed", description.get("FailureReason")
    trials = sorted(_summaries(sm, name), key=lambda t: t["TrainingJobName"])
    stopped = [t for t in trials if t["TrainingJobStatus"] == "Stopped"]
    assert stopped and description["TrainingJobStatusCounters"]["Stopped"] == len(stopped)
    # Parallelism 1, bracket 0 (rungs at 1 and 3 epochs): a trial goes on past its first epoch
    # only if it was the best of those before it there.
    best_so_far = -1.0
    for trial in trials:
        x = float(trial["TunedHyperParameters"]["x"])
        first_epoch = (1 - abs(x - 0.3)) / 9
        events = logs.filter_log_events(
            logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{trial['TrainingJobName']}/"
        )["events"]
        epochs = sum(e["message"].startswith("epoch ") for e in events)
        if first_epoch < best_so_far:
            assert trial["TrainingJobStatus"] == "Stopped", trial
            assert epochs < 9
        else:
            best_so_far = first_epoch
        if trial["TrainingJobStatus"] == "Completed":
            assert epochs == 9
    best = description["BestTrainingJob"]
    assert best["TrainingJobStatus"] == "Completed"
    assert best["FinalHyperParameterTuningJobObjectiveMetric"]["Value"] == max(
        t["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        for t in trials
        if t.get("FinalHyperParameterTuningJobObjectiveMetric")
    )


def test_several_training_job_definitions_are_searched_together(tuning_server: ServerProcess) -> None:
    sm, s3 = boto_client("sagemaker", tuning_server.url), boto_client("s3", tuning_server.url)
    name = f"multi-{uuid.uuid4().hex[:8]}"
    source = _upload_source(s3, {"train.py": EPOCHS_SCRIPT})
    definitions = []
    for label, offset in (("plain", "0"), ("boosted", "1")):
        definition = _definition(source)
        definition["StaticHyperParameters"].update(epochs="1", offset=offset)
        definition.update(
            DefinitionName=label,
            TuningObjective={"Type": "Maximize", "MetricName": "score"},
            HyperParameterRanges={
                "ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}]
            },
        )
        definitions.append(definition)
    sm.create_hyper_parameter_tuning_job(
        HyperParameterTuningJobName=name,
        HyperParameterTuningJobConfig={
            "Strategy": "Bayesian",
            "RandomSeed": 1,
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 8, "MaxParallelTrainingJobs": 2},
        },
        TrainingJobDefinitions=definitions,
    )
    description = _wait_tuning(sm, name)
    assert description["HyperParameterTuningJobStatus"] == "Completed", description.get("FailureReason")
    assert [d["DefinitionName"] for d in description["TrainingJobDefinitions"]] == ["plain", "boosted"]
    trials = _summaries(sm, name)
    assert len(trials) == 8
    assert {t["TrainingJobDefinitionName"] for t in trials} == {"plain", "boosted"}
    for trial in trials:  # each ran its own definition: the boosted one scores above 1
        score = trial["FinalHyperParameterTuningJobObjectiveMetric"]["Value"]
        assert (score > 1) == (trial["TrainingJobDefinitionName"] == "boosted")
    assert description["BestTrainingJob"]["TrainingJobDefinitionName"] == "boosted"
    with pytest.raises(ClientError, match="DefinitionNames must be unique"):
        sm.create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=f"{name}-bad",
            HyperParameterTuningJobConfig={
                "Strategy": "Bayesian",
                "ResourceLimits": {"MaxNumberOfTrainingJobs": 2, "MaxParallelTrainingJobs": 1},
            },
            TrainingJobDefinitions=[definitions[0], definitions[0]],
        )


def test_sdk_multi_algorithm_tuner(
    tuning_server: ServerProcess, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """HyperparameterTuner.create(estimator_dict=...) sends TrainingJobDefinitions."""
    import boto3
    import sagemaker
    from sagemaker.estimator import Estimator
    from sagemaker.tuner import ContinuousParameter, HyperparameterTuner

    monkeypatch.setenv("AWS_ENDPOINT_URL", tuning_server.url)
    session = sagemaker.Session(
        boto_session=boto3.Session(aws_access_key_id="k", aws_secret_access_key="s", region_name="us-east-1"),
        sagemaker_client=boto_client("sagemaker", tuning_server.url),
        default_bucket="sdk-tuning",
    )
    (tmp_path / "train.py").write_text(EPOCHS_SCRIPT)
    estimators = {
        label: Estimator(
            image_uri=SKLEARN_IMAGE,
            entry_point="train.py",
            source_dir=str(tmp_path),
            role=ROLE,
            instance_count=1,
            instance_type="ml.m5.large",
            hyperparameters={"epochs": 1, "offset": offset},
            sagemaker_session=session,
        )
        for label, offset in (("plain", 0), ("boosted", 1))
    }
    tuner = HyperparameterTuner.create(
        estimator_dict=estimators,
        objective_metric_name_dict={"plain": "score", "boosted": "score"},
        hyperparameter_ranges_dict={label: {"x": ContinuousParameter(0.0, 1.0)} for label in estimators},
        metric_definitions_dict={
            label: [{"Name": "score", "Regex": "score=([0-9.]+)"}] for label in estimators
        },
        objective_type="Maximize",
        strategy="Random",
        max_jobs=6,
        max_parallel_jobs=2,
        base_tuning_job_name="multi-algo",  # the SDK's default names are unique to the minute only
    )
    tuner.fit(include_cls_metadata={"plain": False, "boosted": False}, wait=True)
    name = tuner.latest_tuning_job.name
    sm = boto_client("sagemaker", tuning_server.url)
    description = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
    assert description["HyperParameterTuningJobStatus"] == "Completed", description.get("FailureReason")
    trials = _summaries(sm, name)
    assert len(trials) == 6 and all(t["TrainingJobDefinitionName"] in estimators for t in trials)
    best = description["BestTrainingJob"]
    assert tuner.best_training_job() == best["TrainingJobName"]
    assert best["TrainingJobDefinitionName"] == "boosted"
    assert tuner.best_estimator().hyperparameters()["offset"] == "1"
