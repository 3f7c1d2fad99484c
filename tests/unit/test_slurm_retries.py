"""A cluster's node failure and preemption, as the scheduler decides on them: a failed node spends
one of the job's RetryStrategy attempts (none left: the job fails naming it); a preemption starts
the job again from its checkpoint without spending one (SageMaker's managed spot), within
MaxWaitTimeInSeconds and a bound on how often."""

from __future__ import annotations

import pytest

from shipyard.core import outcomes
from shipyard.core.jobs import JobRun
from shipyard.core.training import SecondaryStatus, TrainingJobStatus
from tests.unit._services import World, params

NODE_FAIL = "its Slurm node failed (node-2) (Slurm job 41: NODE_FAIL)"
PREEMPTED = "Slurm job 41 was preempted"
CHECKPOINTS = "s3://b/checkpoints/j1"


def test_a_node_failure_is_retried_under_the_retry_strategy(world: World) -> None:
    world.create("j1", count=2, retries=1)
    world.scheduler.tick()
    world.backend.instances()[1].die(lost=NODE_FAIL)
    world.scheduler.tick()
    job = world.job("j1")
    assert (job.run.attempt, job.run.preemptions, job.state.status) == (1, 0, TrainingJobStatus.IN_PROGRESS)
    world.scheduler.tick()
    world.backend.instances()[0].die(lost=NODE_FAIL)  # the retry's node fails too: none left
    world.scheduler.tick()
    job = world.job("j1")
    assert job.state.status == TrainingJobStatus.FAILED
    assert job.state.failure_reason == f"InternalServerError: algo-1 was lost: {NODE_FAIL}"


def _checkpointed(world: World, name: str, **stopping: int) -> None:
    request = params(name, retries=0)
    request["CheckpointConfig"] = {"S3Uri": CHECKPOINTS}
    request["StoppingCondition"].update(stopping)
    world.training.create(request, region="eu-west-1")


def test_a_preempted_job_starts_again_from_its_checkpoint_without_spending_a_retry(world: World) -> None:
    _checkpointed(world, "j1")
    world.scheduler.tick()
    world.backend.instances()[0].start()
    world.scheduler.tick()
    for preemption in range(1, 3):
        world.backend.instances()[0].die(lost=PREEMPTED, preempted=True)
        world.scheduler.tick()
        job = world.job("j1")
        assert (job.run.attempt, job.run.preemptions) == (preemption, preemption)
        assert job.state.status == TrainingJobStatus.IN_PROGRESS  # no RetryStrategy, and not failed
        assert (job.state.secondary, job.state.transitions[-1].message) == (
            SecondaryStatus.PENDING,
            f"{PREEMPTED}: starting again from its last checkpoint in {CHECKPOINTS}",
        )
        world.scheduler.tick()
        relaunched = world.backend.instances()[0]
        assert relaunched.folder.path == world.jobs_dir / "j1" / f"attempt-{preemption}" / "algo-1"
        assert relaunched.config.request["CheckpointConfig"]["S3Uri"] == CHECKPOINTS  # restored by the agent
        assert world.job("j1").state.secondary == SecondaryStatus.STARTING
    world.backend.instances()[0].end()
    world.scheduler.tick()
    assert world.job("j1").state.status == TrainingJobStatus.COMPLETED


def test_a_node_failure_after_preemptions_still_has_its_retry(world: World) -> None:
    _checkpointed(world, "j1")
    world.scheduler.tick()
    world.backend.instances()[0].die(lost=PREEMPTED, preempted=True)
    world.scheduler.tick()
    world.scheduler.tick()
    world.backend.instances()[0].die(lost=NODE_FAIL)  # RetryStrategy 0: this one fails it
    world.scheduler.tick()
    job = world.job("j1")
    assert job.state.status == TrainingJobStatus.FAILED and NODE_FAIL in (job.state.failure_reason or "")


@pytest.mark.parametrize(
    ("preemptions", "waited", "max_wait", "status", "reason"),
    [
        (0, 10.0, None, None, None),
        (outcomes.MAX_PREEMPTIONS - 1, 10.0, None, None, None),
        (
            outcomes.MAX_PREEMPTIONS,
            10.0,
            None,
            TrainingJobStatus.FAILED,
            f"{PREEMPTED}: preempted 21 times (a job is started again 20 times at most)",
        ),
        (
            1,
            3600.0,
            3600,
            TrainingJobStatus.FAILED,
            f"{PREEMPTED}, and its MaxWaitTimeInSeconds (3600) has passed",
        ),
        (1, 3599.0, 3600, None, None),
    ],
)
def test_when_a_preempted_job_starts_again(
    preemptions: int,
    waited: float,
    max_wait: int | None,
    status: TrainingJobStatus | None,
    reason: str | None,
) -> None:
    verdict = outcomes.on_preempted(
        PREEMPTED,
        preemptions=preemptions,
        status=TrainingJobStatus.IN_PROGRESS,
        waited_seconds=waited,
        max_wait_seconds=max_wait,
    )
    assert (verdict.status if verdict else None, verdict.failure_reason if verdict else None) == (
        status,
        reason,
    )


def test_a_preempted_job_being_stopped_is_stopped() -> None:
    verdict = outcomes.on_preempted(
        PREEMPTED, preemptions=0, status=TrainingJobStatus.STOPPING, waited_seconds=0
    )
    assert verdict is not None and verdict.status == TrainingJobStatus.STOPPED


def test_preemptions_are_kept_with_the_job() -> None:
    run = JobRun(attempt=3, preemptions=2)
    assert JobRun.from_json(run.to_json()).preemptions == 2
    assert outcomes.restart_message(PREEMPTED, None) == (
        f"{PREEMPTED}: starting again from the beginning (it has no CheckpointConfig)"
    )


def test_a_jobs_own_credentials_list_its_checkpoint_folder_which_the_agent_restores() -> None:
    # On a Slurm (or Ray) node the agent restores checkpoints through the server's S3 API with the
    # job's credentials: they list <S3Uri>/ (what the agent asks), not every key starting with it.
    from shipyard.core.credentials import Principal, job_scope

    request = params("j1")
    request["CheckpointConfig"] = {"S3Uri": CHECKPOINTS}
    job = Principal("arn:aws:sts::0:assumed-role/r/j1", (job_scope("training", request, account="0"),))
    assert job.decide("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "checkpoints/j1/"}).allowed
    assert not job.decide("s3:ListBucket", "arn:aws:s3:::b", {"s3:prefix": "checkpoints/j1"}).allowed


def test_a_job_preempted_past_its_max_wait_time_fails_saying_so(world: World) -> None:
    _checkpointed(world, "j1", MaxWaitTimeInSeconds=3600)
    world.scheduler.tick()
    world.clock.advance(3600)
    world.backend.instances()[0].die(lost=PREEMPTED, preempted=True)
    world.scheduler.tick()
    job = world.job("j1")
    assert job.state.status == TrainingJobStatus.FAILED
    assert job.state.failure_reason == (
        f"InternalServerError: algo-1 was lost: {PREEMPTED}, and its MaxWaitTimeInSeconds (3600) has passed"
    )
