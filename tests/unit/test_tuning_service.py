"""The tuning service driven pass by pass over the scheduler on fakes, and its pass plan as a table."""

from __future__ import annotations

import concurrent.futures
import sys
import threading
from typing import Any

import pytest

from shipyard.core.training import TrainingJobStatus
from shipyard.core.tuning import TuningJobSpec, TuningJobStatus, plan_pass
from shipyard.runtime.contract import Outcome
from shipyard.services._tuning_search import AskRequest, AskWorker, InlineExecutor, Suggestion, ask
from shipyard.services.tuning import TuningService
from tests.unit._services import SKLEARN, World


def tuning_request(name: str = "t", *, jobs: int = 4, parallel: int = 2, **config: Any) -> dict[str, Any]:
    return {
        "HyperParameterTuningJobName": name,
        "HyperParameterTuningJobConfig": {
            "Strategy": "Random",
            "HyperParameterTuningJobObjective": {"Type": "Minimize", "MetricName": "loss"},
            "ResourceLimits": {"MaxNumberOfTrainingJobs": jobs, "MaxParallelTrainingJobs": parallel},
            "ParameterRanges": {
                "ContinuousParameterRanges": [{"Name": "lr", "MinValue": "0.01", "MaxValue": "1"}]
            },
            **config,
        },
        "TrainingJobDefinition": {
            "StaticHyperParameters": {
                "sagemaker_program": '"train.py"',
                "sagemaker_submit_directory": '"s3://b/code.tar.gz"',
            },
            "AlgorithmSpecification": {
                "TrainingImage": SKLEARN,
                "TrainingInputMode": "File",
                "MetricDefinitions": [{"Name": "loss", "Regex": r"loss=([0-9.]+)"}],
            },
            "RoleArn": "arn:aws:iam::000000000000:role/R",
            "OutputDataConfig": {"S3OutputPath": "s3://b/o"},
            "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        },
    }


def _running(world: World) -> list[Any]:
    return [g[0] for g in world.backend.launched if g[0].alive]


def test_trials_run_at_most_in_parallel_and_the_best_is_found(world: World) -> None:
    world.tuning.create(tuning_request(jobs=3, parallel=2), region="us-east-1")
    world.tick()  # tuning creates two trials
    world.tick()  # the scheduler launches them
    assert len(_running(world)) == 2
    first, second = _running(world)
    first.log("loss=0.5").end()
    second.log("loss=0.2").end()
    world.tick()  # both end; a third trial is created
    world.tick()
    (third,) = _running(world)
    third.log("loss=0.9").end()
    world.tick()
    world.tick()
    job, views = world.tuning.describe("t")
    assert job.status == TuningJobStatus.COMPLETED and job.completion == "MaxNumberOfTrainingJobsReached"
    best = world.tuning.best(job, views)
    assert best is not None and best.objective == 0.2
    assert len(views) == 3 and all(v.status == TrainingJobStatus.COMPLETED for v in views)


def test_all_trials_failing_fails_the_tuning_job_saying_so(world: World) -> None:
    world.tuning.create(tuning_request(jobs=2, parallel=2), region="us-east-1")
    world.tick()
    world.tick()
    for instance in _running(world):
        instance.end(Outcome.FAILED, exit_code=1, failure_reason="AlgorithmError: x")
    world.tick()
    world.tick()
    job, _ = world.tuning.describe("t")
    assert job.status == TuningJobStatus.FAILED
    assert job.failure_reason == "All 2 training jobs failed; see their FailureReason"


def test_a_stop_stops_running_trials_then_the_job(world: World) -> None:
    world.tuning.create(tuning_request(jobs=4, parallel=2), region="us-east-1")
    world.tick()
    world.tick()
    for instance in _running(world):
        instance.start()
    world.tuning.stop("t")
    for _ in range(4):
        world.tick()
    job, views = world.tuning.describe("t")
    assert job.status == TuningJobStatus.STOPPED
    assert [v.status for v in views] == [TrainingJobStatus.STOPPED] * 2  # no trial started after the stop


def test_max_runtime_ends_the_tuning_job_on_the_clock(world: World) -> None:
    request = tuning_request(jobs=10, parallel=1)
    request["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxRuntimeInSeconds"] = 120
    world.tuning.create(request, region="us-east-1")
    world.tick()
    world.tick()
    (trial,) = _running(world)
    trial.start()
    world.clock.advance(121)
    for _ in range(3):
        world.tick()
    job, _ = world.tuning.describe("t")
    assert job.status == TuningJobStatus.COMPLETED and job.completion == "MaxRuntimeExceeded"


def _bayesian(jobs: int, parallel: int) -> dict[str, Any]:
    request = tuning_request(jobs=jobs, parallel=parallel, Strategy="Bayesian")
    request["HyperParameterTuningJobConfig"]["ParameterRanges"] = {
        "ContinuousParameterRanges": [
            {"Name": "lr", "MinValue": "0.001", "MaxValue": "1", "ScalingType": "Logarithmic"},
            {"Name": "momentum", "MinValue": "0", "MaxValue": "1"},
        ]
    }
    return request


def _run_to_the_end(world: World, loss: Any) -> list[dict[str, str]]:
    """Ends each running trial with ``loss(its hyperparameters)`` until the tuning job ends; the
    hyperparameters of the trials in flight at each pass."""
    in_flight = []
    for _ in range(40):
        world.tick()
        running = _running(world)
        if running:
            in_flight.append([dict(i.config.request["HyperParameters"]) for i in running])
        for instance in running:
            hps = instance.config.request["HyperParameters"]
            instance.log(f"loss={loss(hps):.6f}").end()
        if world.tuning.describe("t")[0].status.is_terminal:
            break
    return in_flight


def test_bayesian_over_a_few_continuous_ranges_searches_with_a_gaussian_process(
    world: World, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="shipyard.services.tuning")
    world.tuning.create(_bayesian(jobs=8, parallel=2), region="us-east-1")
    in_flight = _run_to_the_end(world, lambda hps: (float(hps["momentum"]) - 0.3) ** 2)
    job, views = world.tuning.describe("t")
    assert job.status == TuningJobStatus.COMPLETED and len(views) == 8
    said = [r.getMessage() for r in caplog.records if "searches with" in r.getMessage()]
    assert len(said) == 1 and "Gaussian-process" in said[0]
    # Trials in flight together are spread out, not the same point twice.
    points = [{(h["lr"], h["momentum"]) for h in batch} for batch in in_flight]
    assert [len(p) for p in points] == [len(batch) for batch in in_flight]


def test_without_torch_bayesian_falls_back_to_tpe_saying_so_once(
    world: World, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "torch", None)  # as in an install without torch
    caplog.set_level("INFO", logger="shipyard.services.tuning")
    world.tuning.create(_bayesian(jobs=6, parallel=2), region="us-east-1")
    _run_to_the_end(world, lambda hps: float(hps["momentum"]))
    job, views = world.tuning.describe("t")
    assert job.status == TuningJobStatus.COMPLETED and len(views) == 6
    said = [r for r in caplog.records if "searches with" in r.getMessage()]
    assert len(said) == 1 and said[0].levelname == "WARNING"
    assert "TPE" in said[0].getMessage() and "torch" in said[0].getMessage()


def _trial_names(world: World) -> list[str]:
    return [g[0].config.request["TrainingJobName"] for g in world.backend.launched]


def test_a_slow_ask_holds_up_neither_the_scheduler_nor_other_jobs(world: World) -> None:
    asking, answer = threading.Event(), threading.Event()

    def slow_ask(request: AskRequest) -> Suggestion:  # as a Gaussian process's fit on many trials
        asking.set()
        answer.wait(timeout=60)
        return ask(request)

    ready = threading.Event()  # the server's scheduler wake
    worker = AskWorker(lambda: concurrent.futures.ThreadPoolExecutor(1), on_ready=ready.set, ask=slow_ask)
    tuning = TuningService(
        world.tuning.repository, world.training, account_id="0", clock=world.clock, asks=worker
    )
    try:
        tuning.create(tuning_request(jobs=1, parallel=1), region="us-east-1")
        tuning.tick()  # the ask starts in the worker; the pass goes on
        assert asking.wait(timeout=30)
        world.create("other")
        world.scheduler.tick()
        tuning.tick()
        assert _trial_names(world) == ["other"]  # launched while the trial's ask still runs
        assert not ready.is_set()
        answer.set()
        assert ready.wait(timeout=30)  # the worker wakes the scheduler once it has the suggestion
        tuning.tick()  # the trial is created
        world.scheduler.tick()
        launched = _trial_names(world)
        assert len(launched) == 2 and launched[1].startswith("t-001-")
    finally:
        answer.set()
        worker.close()


def test_the_next_trial_is_asked_for_while_the_last_one_uploads(world: World) -> None:
    asked: list[int] = []

    def counting_ask(request: AskRequest) -> Suggestion:
        asked.append(request.number)
        return ask(request)

    tuning = TuningService(
        world.tuning.repository,
        world.training,
        account_id="0",
        clock=world.clock,
        asks=AskWorker(InlineExecutor, ask=counting_ask),
    )
    tuning.create(tuning_request(jobs=2, parallel=1), region="us-east-1")
    tuning.tick()
    world.scheduler.tick()
    (first,) = _running(world)
    first.start().phase("Training").log("loss=0.4").phase("Uploading")
    world.scheduler.tick()
    tuning.tick()
    assert asked == [0, 1]  # trial 2 is asked for with trial 1's objective, before it ends
    first.end()
    world.scheduler.tick()
    tuning.tick()  # trial 1 ended as it was seen: its suggestion is ready, not asked again
    assert asked == [0, 1] and len(world.tuning.describe("t")[1]) == 2


def test_a_changed_result_is_asked_again(world: World) -> None:
    asked: list[int] = []

    def counting_ask(request: AskRequest) -> Suggestion:
        asked.append(request.number)
        return ask(request)

    tuning = TuningService(
        world.tuning.repository,
        world.training,
        account_id="0",
        clock=world.clock,
        asks=AskWorker(InlineExecutor, ask=counting_ask),
    )
    tuning.create(tuning_request(jobs=2, parallel=1), region="us-east-1")
    tuning.tick()
    world.scheduler.tick()
    (first,) = _running(world)
    first.start().phase("Training").log("loss=0.4").phase("Uploading")
    world.scheduler.tick()
    tuning.tick()
    first.end(Outcome.FAILED, exit_code=1, failure_reason="ClientError: the upload failed")
    world.scheduler.tick()
    tuning.tick()  # what was asked knew a result that did not come: asked again
    assert asked == [0, 1, 1] and len(world.tuning.describe("t")[1]) == 2


SPEC = TuningJobSpec.from_request(tuning_request(jobs=4, parallel=2))


@pytest.mark.parametrize(
    ("kw", "expected"),
    [
        ({"launched": 0, "running": 0, "completed": 0}, {"launch": 2}),
        ({"launched": 2, "running": 2, "completed": 0}, {"launch": 0}),
        ({"launched": 3, "running": 1, "completed": 2, "best": 0.1}, {"launch": 1}),
        ({"launched": 4, "running": 1, "completed": 3, "best": 0.1}, {"launch": 0}),  # all launched: wait
        ({"launched": 4, "running": 0, "completed": 3, "best": 0.1}, {"finish": TuningJobStatus.COMPLETED}),
        ({"launched": 4, "running": 0, "completed": 0}, {"finish": TuningJobStatus.FAILED}),
        ({"launched": 4, "running": 0, "completed": 2}, {"finish": TuningJobStatus.FAILED}),  # no objective
        ({"launched": 2, "running": 2, "completed": 0, "stopping": True}, {"stop_trials": True}),
        (
            {"launched": 2, "running": 0, "completed": 1, "stopping": True},
            {"finish": TuningJobStatus.STOPPED},
        ),
    ],
)
def test_plan_pass(kw: dict[str, Any], expected: dict[str, Any]) -> None:
    args = {"stopping": False, "elapsed_seconds": 0.0, "best": None, **kw}
    step = plan_pass(SPEC, **args)
    for field, value in expected.items():
        assert getattr(step, field) == value
    if "finish" not in expected:
        assert step.finish is None


def test_plan_pass_says_why_a_job_without_objective_failed() -> None:
    step = plan_pass(SPEC, stopping=False, elapsed_seconds=0, best=None, launched=4, running=0, completed=2)
    assert step.failure_reason == "No training job reported the objective metric 'loss'"


def test_creating_and_stopping_a_tuning_job_wakes_the_scheduler(world: World) -> None:
    # An idle scheduler looks only every few seconds: its first trials and its stop must not wait.
    woken: list[str] = []
    tuning = TuningService(
        world.tuning.repository,
        world.training,
        account_id="000000000000",
        clock=world.clock,
        wake=lambda: woken.append("wake"),
    )
    tuning.create(tuning_request(), region="us-east-1")
    assert woken == ["wake"]
    tuning.stop("t")
    assert woken == ["wake", "wake"]
