"""The engine's decisions, without I/O: which steps start now, what a job's Describe answer means
for its step, whether a failure is retried and when, and how an execution ends.

The pipeline service reads an execution, calls these, and writes what they decided.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Mapping, Sequence
from typing import Any

from shipyard.core.pipelines._definition import Definition, RetryPolicy, Step
from shipyard.core.pipelines._runs import ExecutionStatus, StepRun, StepStatus

DEFAULT_PARALLELISM = 50


@dataclasses.dataclass(frozen=True)
class StepKind:
    """How a step type maps onto SageMaker operations."""

    create: str
    describe: str
    name_field: str | None  # the create request's name member (None: the service names it)
    arn_field: str  # in the create answer
    metadata: str  # ListPipelineExecutionSteps' Metadata member
    status_field: str | None = None  # in the describe answer (None: done once created)
    stop: str | None = None
    max_name: int = 63


STEP_KINDS: Mapping[str, StepKind] = {
    "Processing": StepKind(
        "CreateProcessingJob",
        "DescribeProcessingJob",
        "ProcessingJobName",
        "ProcessingJobArn",
        "ProcessingJob",
        "ProcessingJobStatus",
        "StopProcessingJob",
    ),
    "Training": StepKind(
        "CreateTrainingJob",
        "DescribeTrainingJob",
        "TrainingJobName",
        "TrainingJobArn",
        "TrainingJob",
        "TrainingJobStatus",
        "StopTrainingJob",
    ),
    "Tuning": StepKind(
        "CreateHyperParameterTuningJob",
        "DescribeHyperParameterTuningJob",
        "HyperParameterTuningJobName",
        "HyperParameterTuningJobArn",
        "TuningJob",
        "HyperParameterTuningJobStatus",
        "StopHyperParameterTuningJob",
        max_name=32,
    ),
    "Transform": StepKind(
        "CreateTransformJob",
        "DescribeTransformJob",
        "TransformJobName",
        "TransformJobArn",
        "TransformJob",
        "TransformJobStatus",
        "StopTransformJob",
    ),
    "Model": StepKind("CreateModel", "DescribeModel", "ModelName", "ModelArn", "Model"),
    "CreateModel": StepKind("CreateModel", "DescribeModel", "ModelName", "ModelArn", "Model"),
    "RegisterModel": StepKind(
        "CreateModelPackage", "DescribeModelPackage", None, "ModelPackageArn", "RegisterModel"
    ),
}


# -- which steps start ----------------------------------------------------------------------------
def failures(runs: Mapping[str, StepRun]) -> list[StepRun]:
    """The steps that failed or were stopped, in the order they were recorded."""
    return [r for r in runs.values() if r.status in (StepStatus.FAILED, StepStatus.STOPPED)]


def ready_steps(
    definition: Definition, runs: Mapping[str, StepRun], *, parallelism: int | None = None
) -> list[Step]:
    """The steps to start now, in definition order: not run yet, every dependency succeeded, and
    on the branch their Condition step took. None once a step has failed or stopped; with
    ``parallelism``, no more than it allows beside the steps still running."""
    if failures(runs):
        return []
    ready = []
    for name, step in definition.steps.items():
        if name in runs:
            continue
        if step.branch is not None:
            condition = runs.get(step.branch[0])
            if condition is None or condition.status != StepStatus.SUCCEEDED:
                continue
            if (condition.metadata.get("Condition", {}).get("Outcome") == "True") != step.branch[1]:
                continue
        if all(d in runs and runs[d].status == StepStatus.SUCCEEDED for d in definition.dependencies(name)):
            ready.append(step)
    if parallelism is None:
        return ready
    active = sum(not r.status.is_terminal for r in runs.values())
    return ready[: max(0, parallelism - active)]


def execution_outcome(
    definition: Definition, runs: Mapping[str, StepRun]
) -> tuple[ExecutionStatus, str | None] | None:
    """How the execution ends now (status, failure reason), or None while it runs on: Failed
    naming its first failed step once nothing runs, Succeeded when nothing runs or is left to start."""
    if any(not r.status.is_terminal for r in runs.values()):
        return None
    failed = failures(runs)
    if failed:
        first = failed[0]
        return (
            ExecutionStatus.FAILED,
            f"Step {first.name!r} failed: {first.failure_reason or first.status.value}",
        )
    if ready_steps(definition, runs):
        return None
    return ExecutionStatus.SUCCEEDED, None


# -- following a job --------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class StepOutcome:
    """What a job's end means for its step. ``exception_type`` is the retry policies' name for a
    failure (None: no policy covers it)."""

    status: StepStatus
    failure_reason: str | None = None
    exception_type: str | None = None


def exception_type(failure_reason: str | None, *, job: bool) -> str | None:
    """The retry policy exception type a failure counts as, or None when no policy covers it
    (a job's own error: the algorithm failed, as on SageMaker)."""
    reason = failure_reason or ""
    if job:
        if reason.startswith("InternalServerError"):
            return "SageMaker.JOB_INTERNAL_ERROR"
        if reason.startswith("CapacityError"):
            return "SageMaker.CAPACITY_ERROR"
        return None
    return None


def step_outcome(step_type: str, described: Mapping[str, Any]) -> StepOutcome | None:
    """A job step's outcome from its job's Describe answer; None while the job runs (or for a
    step type whose work is done once created)."""
    kind = STEP_KINDS.get(step_type)
    if kind is None or kind.status_field is None:
        return None
    status = described.get(kind.status_field)
    if status == "Completed":
        return StepOutcome(StepStatus.SUCCEEDED)
    if status == "Failed":
        reason = described.get("FailureReason") or "the job failed"
        return StepOutcome(StepStatus.FAILED, reason, exception_type(reason, job=True))
    if status == "Stopped":
        return StepOutcome(StepStatus.STOPPED, "The job was stopped")
    return None


# -- retries ----------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Retry:
    """A failed step starts again at ``at``, under its ``policy``-th RetryPolicy."""

    policy: int
    at: dt.datetime
    delay_seconds: float


def retry_for(
    policies: Sequence[RetryPolicy],
    retries: Mapping[str, int],
    exception: str | None,
    *,
    first_started: dt.datetime,
    now: dt.datetime,
) -> Retry | None:
    """The retry a failure gets: under the first policy covering ``exception`` with attempts
    (MaxAttempts) or time (ExpireAfterMin) left, after IntervalSeconds * BackoffRate^n; None when
    it is final. ``retries`` counts the retries so far by policy index (as strings)."""
    if exception is None:
        return None
    for i, policy in enumerate(policies):
        done = retries.get(str(i), 0)
        if policy.covers(exception) and policy.allows(done, first_started, now):
            delay = policy.delay(done)
            return Retry(i, now + dt.timedelta(seconds=delay), delay)
    return None


def cached_run(
    earlier: Sequence[tuple[str, StepRun | None]], key: str, *, since: dt.datetime | None
) -> tuple[str, StepRun] | None:
    """The earlier run a step with cache key ``key`` reuses, with the execution it came from
    (``earlier``: (execution ARN, that execution's run of the step), newest first): one that
    succeeded with the same key and ended since ``since``."""
    for arn, run in earlier:
        if (
            run is not None
            and run.status == StepStatus.SUCCEEDED
            and run.cache_key == key
            and run.properties is not None
            and (since is None or (run.ended is not None and run.ended >= since))
        ):
            return run.cache_source or arn, run
    return None
