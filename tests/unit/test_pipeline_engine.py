"""The pipeline engine driven pass by pass (``tick``) on a fake port, with a SQLite store and a
manual clock: what a user of the pipeline would see after each pass."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.core.clock import ManualClock
from shipyard.errors import LimitExceededError
from shipyard.services.pipelines import PipelineService
from shipyard.storage import LocalObjectStore
from shipyard.store import Database
from shipyard.store.pipelines import PipelineRepository
from shipyard.testing import FakePipelineSteps


@pytest.fixture
def world(tmp_path: Path) -> Iterator[tuple[PipelineService, FakePipelineSteps, ManualClock]]:
    db = Database(f"sqlite:///{tmp_path}/x.db")
    db.upgrade()
    steps = FakePipelineSteps()
    clock = ManualClock()
    service = PipelineService(
        PipelineRepository(db),
        LocalObjectStore(tmp_path / "objects"),
        account_id="1",
        steps=steps,
        clock=clock,
    )
    yield service, steps, clock
    db.dispose()


def _job(name: str, **extra: Any) -> dict[str, Any]:
    return {"Name": name, "Type": "Training", "Arguments": {"RoleArn": "r"}, **extra}


def _start(service: PipelineService, steps: list[dict[str, Any]], name: str = "p", **params: Any) -> str:
    definition = {
        "Version": "2020-12-01",
        "Parameters": [{"Name": "Threshold", "Type": "Float", "DefaultValue": 0.5}],
        "Steps": steps,
    }
    if name not in [p.name for p in service.find({})[0]]:
        service.create(
            {"PipelineName": name, "PipelineDefinition": json.dumps(definition)}, region="eu-west-1"
        )
    return service.start({"PipelineName": name, **params}, region="eu-west-1", owner=None).arn


def _statuses(service: PipelineService, arn: str) -> dict[str, str]:
    return {name: run.status.value for name, run in service.execution(arn).steps.items()}


def test_two_steps_run_in_order(world: tuple[PipelineService, FakePipelineSteps, ManualClock]) -> None:
    service, steps, _ = world
    arn = _start(service, [_job("prepare"), _job("train", DependsOn=["prepare"])])

    service.tick()
    assert _statuses(service, arn) == {"prepare": "Executing"}
    (prepare,) = steps.of_step("prepare")
    assert prepare.arn.split(":")[3] == "eu-west-1"  # the execution's region, not a default

    service.tick()  # still running: nothing changes
    assert _statuses(service, arn) == {"prepare": "Executing"}

    prepare.finish("Completed")
    service.tick()
    assert _statuses(service, arn) == {"prepare": "Succeeded", "train": "Executing"}

    steps.of_step("train")[0].finish("Completed")
    service.tick()
    execution = service.execution(arn)
    assert execution.status.value == "Succeeded"
    assert execution.steps["train"].properties is not None


def test_a_covered_failure_is_retried_after_its_interval(
    world: tuple[PipelineService, FakePipelineSteps, ManualClock],
) -> None:
    service, steps, clock = world
    policy = {"ExceptionType": ["SageMaker.JOB_INTERNAL_ERROR"], "IntervalSeconds": 30, "MaxAttempts": 1}
    arn = _start(service, [_job("train", RetryPolicies=[policy])])
    service.tick()
    steps.of_step("train")[0].finish("Failed", "InternalServerError: the agent was lost")
    service.tick()
    run = service.execution(arn).steps["train"]
    assert run.status.value == "Executing" and run.retry_at is not None  # waiting to retry

    clock.advance(29)
    service.tick()
    assert len(steps.of_step("train")) == 1  # not yet
    clock.advance(1)
    service.tick()
    first, second = steps.of_step("train")
    assert first.name != second.name
    assert service.execution(arn).steps["train"].attempts == 2

    second.finish("Failed", "InternalServerError: again")  # MaxAttempts spent
    service.tick()
    execution = service.execution(arn)
    assert execution.status.value == "Failed"
    assert "InternalServerError: again" in (execution.failure_reason or "")
    assert execution.steps["train"].jobs == (first.name, second.name)


def test_a_refused_launch_under_a_resource_limit_policy_is_retried(
    world: tuple[PipelineService, FakePipelineSteps, ManualClock],
) -> None:
    service, steps, clock = world
    policy = {"ExceptionType": ["SageMaker.RESOURCE_LIMIT"], "IntervalSeconds": 5, "MaxAttempts": 2}
    steps.refuse("Training", LimitExceededError("Budget 'team' denies training job"))
    arn = _start(service, [_job("train", RetryPolicies=[policy])])
    service.tick()
    assert steps.of_step("train") == []
    assert "ResourceLimitExceeded" in (service.execution(arn).steps["train"].failure_reason or "")
    clock.advance(5)
    service.tick()
    assert _statuses(service, arn) == {"train": "Executing"}
    assert len(steps.of_step("train")) == 1


def test_a_script_failure_is_final(world: tuple[PipelineService, FakePipelineSteps, ManualClock]) -> None:
    service, steps, _ = world
    policy = {"ExceptionType": ["SageMaker.JOB_INTERNAL_ERROR"], "MaxAttempts": 5}
    arn = _start(service, [_job("train", RetryPolicies=[policy]), _job("after", DependsOn=["train"])])
    service.tick()
    steps.of_step("train")[0].finish("Failed", "AlgorithmError: exit code 1")
    service.tick()
    execution = service.execution(arn)
    assert execution.status.value == "Failed"
    assert execution.failure_reason == "Step 'train' failed: AlgorithmError: exit code 1"
    assert "after" not in execution.steps


@pytest.mark.parametrize(
    ("threshold", "taken", "skipped"), [("0.9", "deploy", "stop-here"), ("0.99", "stop-here", "deploy")]
)
def test_a_condition_picks_its_branch(
    world: tuple[PipelineService, FakePipelineSteps, ManualClock], threshold: str, taken: str, skipped: str
) -> None:
    service, steps, _ = world
    condition = {
        "Name": "good-enough",
        "Type": "Condition",
        "Arguments": {
            "Conditions": [
                {
                    "Type": "GreaterThanOrEqualTo",
                    "LeftValue": {"Get": "Steps.train.FinalMetricDataList[0].Value"},
                    "RightValue": {"Get": "Parameters.Threshold"},
                }
            ],
            "IfSteps": [{"Name": "deploy", "Type": "Model", "Arguments": {"ModelName": "m"}}],
            "ElseSteps": [
                {"Name": "stop-here", "Type": "Fail", "Arguments": {"ErrorMessage": "not good enough"}}
            ],
        },
    }
    arn = _start(
        service, [_job("train"), condition], PipelineParameters=[{"Name": "Threshold", "Value": threshold}]
    )
    service.tick()
    steps.of_step("train")[0].finish("Completed", FinalMetricDataList=[{"MetricName": "acc", "Value": 0.95}])
    service.tick()  # the condition is decided at once and its branch starts in the same pass
    execution = service.execution(arn)
    assert taken in execution.steps and skipped not in execution.steps
    assert execution.steps["good-enough"].metadata["Condition"]["Outcome"] == str(taken == "deploy")
    if taken == "deploy":
        assert execution.status.value == "Succeeded"
    else:
        assert execution.status.value == "Failed" and "not good enough" in (execution.failure_reason or "")


def test_caching_reuses_an_earlier_run(world: tuple[PipelineService, FakePipelineSteps, ManualClock]) -> None:
    service, steps, clock = world
    cached = _job("train", CacheConfig={"Enabled": True, "ExpireAfter": "PT1H"})
    first = _start(service, [cached])
    service.tick()
    steps.of_step("train")[0].finish("Completed")
    service.tick()
    assert service.execution(first).status.value == "Succeeded"

    clock.advance(60)
    second = _start(service, [cached])
    service.tick()
    run = service.execution(second).steps["train"]
    assert run.status.value == "Succeeded" and run.cache_source == first
    assert len(steps.jobs) == 1  # no new job
    assert service.execution(second).status.value == "Succeeded"

    clock.advance(3600)  # expired: runs again
    third = _start(service, [cached])
    service.tick()
    assert _statuses(service, third) == {"train": "Executing"}
    assert len(steps.jobs) == 2


def test_stop_stops_running_steps(world: tuple[PipelineService, FakePipelineSteps, ManualClock]) -> None:
    service, steps, _ = world
    arn = _start(service, [_job("a"), _job("b"), _job("after", DependsOn=["a", "b"])])
    service.tick()
    assert _statuses(service, arn) == {"a": "Executing", "b": "Executing"}
    service.stop(arn)
    service.tick()
    assert all(job.stopped for job in steps.jobs.values())
    assert service.execution(arn).status.value == "Stopping"
    for job in steps.jobs.values():
        job.finish("Stopped")
    service.tick()
    execution = service.execution(arn)
    assert execution.status.value == "Stopped"
    assert _statuses(service, arn) == {"a": "Stopped", "b": "Stopped"}


def test_parallelism_limits_running_steps(
    world: tuple[PipelineService, FakePipelineSteps, ManualClock],
) -> None:
    service, steps, _ = world
    arn = _start(
        service,
        [_job("a"), _job("b"), _job("c")],
        ParallelismConfiguration={"MaxParallelExecutionSteps": 2},
    )
    service.tick()
    assert _statuses(service, arn) == {"a": "Executing", "b": "Executing"}
    steps.of_step("-a-")[0].finish("Completed")
    service.tick()
    assert _statuses(service, arn) == {"a": "Succeeded", "b": "Executing", "c": "Executing"}


def test_starting_stopping_and_retrying_an_execution_wake_the_scheduler(tmp_path: Path) -> None:
    # An idle scheduler looks only every few seconds: an execution's first steps must not wait.
    db = Database(f"sqlite:///{tmp_path}/x.db")
    db.upgrade()
    woken: list[str] = []
    service = PipelineService(
        PipelineRepository(db),
        LocalObjectStore(tmp_path / "objects"),
        account_id="1",
        steps=FakePipelineSteps(),
        clock=ManualClock(),
        wake=lambda: woken.append("wake"),
    )
    arn = _start(service, [_job("train")])
    assert woken == ["wake"]
    service.stop(arn)
    assert woken == ["wake"] * 2
    service.tick()  # the stop is carried out: the execution is Stopped, and may be retried
    assert service.execution(arn).status.value == "Stopped"
    service.retry(arn, {})
    assert woken == ["wake"] * 3
    db.dispose()
