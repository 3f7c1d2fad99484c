"""The pipeline engine's decisions (core.pipelines), table by table: which steps start, what a
job's Describe answer means for its step, retries, caching, how an execution ends."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import pytest

from shipyard.core.pipelines import (
    Definition,
    Execution,
    ExecutionStatus,
    RetryPolicy,
    StepRun,
    StepStatus,
    cached_run,
    execution_outcome,
    ready_steps,
    retry_for,
    step_outcome,
)

T0 = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)


def _definition() -> Definition:
    """prep → train → check (condition: accuracy ≥ 0.8) → register (if) | give-up (else);
    side has no dependencies."""
    train = {
        "Name": "train",
        "Type": "Training",
        "DependsOn": ["prep"],
        "Arguments": {"HyperParameters": {"x": {"Get": "Steps.prep.ProcessingJobName"}}},
    }
    check = {
        "Name": "check",
        "Type": "Condition",
        "Arguments": {
            "Conditions": [
                {
                    "Type": "GreaterThanOrEqualTo",
                    "LeftValue": {"Get": "Steps.train.FinalMetricDataList[0].Value"},
                    "RightValue": 0.8,
                }
            ],
            "IfSteps": [{"Name": "register", "Type": "RegisterModel", "Arguments": {}}],
            "ElseSteps": [{"Name": "give-up", "Type": "Fail", "Arguments": {"ErrorMessage": "too low"}}],
        },
    }
    steps = [
        {"Name": "prep", "Type": "Processing", "Arguments": {}},
        train,
        check,
        {"Name": "side", "Type": "Processing", "Arguments": {}},
    ]
    return Definition.parse(json.dumps({"Version": "2020-12-01", "Steps": steps}))


def _runs(**statuses: str) -> dict[str, StepRun]:
    runs = {}
    for name, status in statuses.items():
        outcome = None
        if ":" in status:
            status, outcome = status.split(":")
        metadata = {"Condition": {"Outcome": outcome}} if outcome else {}
        runs[name] = StepRun(name, "?", StepStatus(status), T0, metadata=metadata)
    return runs


@pytest.mark.parametrize(
    ("runs", "parallelism", "ready"),
    [
        ({}, None, ["prep", "side"]),
        ({}, 1, ["prep"]),
        (_runs(prep="Executing"), None, ["side"]),
        (_runs(prep="Executing"), 1, []),
        (_runs(prep="Succeeded", side="Succeeded"), None, ["train"]),
        (_runs(prep="Succeeded", side="Executing", train="Succeeded"), None, ["check"]),
        (
            _runs(prep="Succeeded", side="Succeeded", train="Succeeded", check="Succeeded:True"),
            None,
            ["register"],
        ),
        (
            _runs(prep="Succeeded", side="Succeeded", train="Succeeded", check="Succeeded:False"),
            None,
            ["give-up"],
        ),
        (_runs(prep="Failed"), None, []),  # nothing new starts once a step failed
        (_runs(prep="Stopped"), None, []),
        (_runs(prep="Succeeded", side="Succeeded", train="Executing"), None, []),
    ],
)
def test_ready_steps(runs: dict[str, StepRun], parallelism: int | None, ready: list[str]) -> None:
    assert [s.name for s in ready_steps(_definition(), runs, parallelism=parallelism)] == ready


@pytest.mark.parametrize(
    ("runs", "outcome"),
    [
        ({}, None),  # steps to start
        (_runs(prep="Executing", side="Failed"), None),  # one still runs
        (_runs(prep="Succeeded", side="Failed"), (ExecutionStatus.FAILED, "Step 'side' failed: Failed")),
        (_runs(prep="Stopped", side="Succeeded"), (ExecutionStatus.FAILED, "Step 'prep' failed: Stopped")),
        (
            _runs(
                prep="Succeeded",
                side="Succeeded",
                train="Succeeded",
                check="Succeeded:True",
                register="Succeeded",
            ),
            (ExecutionStatus.SUCCEEDED, None),  # give-up is on the branch not taken
        ),
    ],
)
def test_execution_outcome(runs: dict[str, StepRun], outcome: Any) -> None:
    assert execution_outcome(_definition(), runs) == outcome


@pytest.mark.parametrize(
    ("step_type", "answer", "status", "reason", "exception"),
    [
        ("Training", {"TrainingJobStatus": "InProgress"}, None, None, None),
        ("Training", {"TrainingJobStatus": "Stopping"}, None, None, None),
        ("Training", {"TrainingJobStatus": "Completed"}, StepStatus.SUCCEEDED, None, None),
        ("Processing", {"ProcessingJobStatus": "Completed"}, StepStatus.SUCCEEDED, None, None),
        ("Transform", {"TransformJobStatus": "Stopped"}, StepStatus.STOPPED, "The job was stopped", None),
        (
            "Tuning",
            {"HyperParameterTuningJobStatus": "Failed", "FailureReason": "No training job succeeded"},
            StepStatus.FAILED,
            "No training job succeeded",
            None,
        ),
        (
            "Training",
            {"TrainingJobStatus": "Failed", "FailureReason": "AlgorithmError: exit code 1"},
            StepStatus.FAILED,
            "AlgorithmError: exit code 1",
            None,  # the script's own failure: no policy covers it
        ),
        (
            "Training",
            {"TrainingJobStatus": "Failed", "FailureReason": "InternalServerError: agent lost"},
            StepStatus.FAILED,
            "InternalServerError: agent lost",
            "SageMaker.JOB_INTERNAL_ERROR",
        ),
        (
            "Processing",
            {"ProcessingJobStatus": "Failed", "FailureReason": "CapacityError: no room"},
            StepStatus.FAILED,
            "CapacityError: no room",
            "SageMaker.CAPACITY_ERROR",
        ),
        ("Processing", {"ProcessingJobStatus": "Failed"}, StepStatus.FAILED, "the job failed", None),
        ("Model", {"ModelArn": "arn"}, None, None, None),  # done once created: nothing to follow
    ],
)
def test_step_outcome(
    step_type: str,
    answer: dict[str, Any],
    status: StepStatus | None,
    reason: str | None,
    exception: str | None,
) -> None:
    outcome = step_outcome(step_type, answer)
    if status is None:
        assert outcome is None
    else:
        assert outcome is not None
        assert (outcome.status, outcome.failure_reason, outcome.exception_type) == (status, reason, exception)


CAPACITY = RetryPolicy(("SageMaker.CAPACITY_ERROR",), interval_seconds=10, backoff_rate=2, max_attempts=3)
TIMED = RetryPolicy(("Step.SERVICE_FAULT",), interval_seconds=1, backoff_rate=1, expire_after_minutes=5)
INTERNAL = RetryPolicy(("SageMaker.JOB_INTERNAL_ERROR", "SageMaker.CAPACITY_ERROR"), max_attempts=1)


@pytest.mark.parametrize(
    ("exception", "retries", "minutes_since_start", "expected"),
    [
        (None, {}, 0, None),  # not retryable at all
        ("SageMaker.RESOURCE_LIMIT", {}, 0, None),  # no policy covers it
        ("SageMaker.CAPACITY_ERROR", {}, 0, (0, 10.0)),
        ("SageMaker.CAPACITY_ERROR", {"0": 1}, 0, (0, 20.0)),  # backoff
        ("SageMaker.CAPACITY_ERROR", {"0": 2}, 0, (0, 40.0)),
        (
            "SageMaker.CAPACITY_ERROR",
            {"0": 3},
            0,
            (2, 1.0),
        ),  # the first policy is spent: the next covering one
        ("SageMaker.CAPACITY_ERROR", {"0": 3, "2": 1}, 0, None),  # all spent
        ("SageMaker.JOB_INTERNAL_ERROR", {}, 0, (2, 1.0)),
        ("Step.SERVICE_FAULT", {"1": 50}, 4, (1, 1.0)),  # time left
        ("Step.SERVICE_FAULT", {}, 5, None),  # expired
    ],
)
def test_retry_for(
    exception: str | None,
    retries: dict[str, int],
    minutes_since_start: int,
    expected: tuple[int, float] | None,
) -> None:
    now = T0 + dt.timedelta(minutes=minutes_since_start)
    retry = retry_for((CAPACITY, TIMED, INTERNAL), retries, exception, first_started=T0, now=now)
    if expected is None:
        assert retry is None
    else:
        assert retry is not None
        assert (retry.policy, retry.delay_seconds) == expected
        assert retry.at == now + dt.timedelta(seconds=expected[1])


def _done(
    key: str | None,
    *,
    ended: dt.datetime = T0,
    status: StepStatus = StepStatus.SUCCEEDED,
    source: str | None = None,
) -> StepRun:
    return StepRun(
        "s", "Training", status, T0, ended=ended, cache_key=key, properties={}, cache_source=source
    )


@pytest.mark.parametrize(
    ("earlier", "since", "expected"),
    [
        ([], None, None),
        ([("e1", None)], None, None),  # that execution did not run the step
        ([("e1", _done("other"))], None, None),  # different arguments
        ([("e1", _done("k", status=StepStatus.FAILED))], None, None),
        ([("e1", _done("k"))], None, "e1"),
        ([("e1", _done("k"))], T0 + dt.timedelta(seconds=1), None),  # expired
        ([("e2", _done("other")), ("e1", _done("k"))], None, "e1"),  # newest match
        ([("e2", _done("k", source="e0"))], None, "e0"),  # a reused run names where it came from
    ],
)
def test_cached_run(
    earlier: list[tuple[str, StepRun | None]], since: dt.datetime | None, expected: str | None
) -> None:
    hit = cached_run(earlier, "k", since=since)
    assert (hit[0] if hit else None) == expected


def test_an_execution_runs_in_its_pipelines_region_unless_told() -> None:
    arn = "arn:aws:sagemaker:eu-west-1:1:pipeline/p"
    common: dict[str, Any] = {
        "arn": f"{arn}/execution/x",
        "pipeline": "p",
        "pipeline_arn": arn,
        "created": T0,
        "status": ExecutionStatus.EXECUTING,
        "definition": "{}",
        "parameters": {},
        "last_modified": T0,
    }
    assert Execution(**common).region == "eu-west-1"
    assert Execution(**common, region="ap-south-1").region == "ap-south-1"
