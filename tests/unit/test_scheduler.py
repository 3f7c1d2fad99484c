"""The job scheduler driven pass by pass on a fake backend and a manual clock."""

from __future__ import annotations

import datetime as dt
import signal

import pytest

from shipyard.core.placement import Resources
from shipyard.core.training import SecondaryStatus, TrainingJobStatus
from shipyard.errors import NotFoundError, ValidationError
from shipyard.runtime.contract import Outcome
from tests.unit._services import World


def test_a_job_that_fits_is_launched_with_its_agent_config(world: World) -> None:
    world.create("j1", count=2)
    assert world.scheduler.tick()
    algo1, algo2 = world.backend.instances("j1")
    config = algo1.config
    assert (config.kind, config.host, config.host_index, config.region) == (
        "training",
        "algo-1",
        0,
        "eu-west-1",
    )
    assert config.cpus == 2 and config.memory_bytes == 8 * 2**30 and config.disk_bytes == 10 * 10**9
    assert config.environment is not None and config.arn.endswith(":training-job/j1")
    assert algo2.config.host == "algo-2"
    assert algo1.folder.path == world.jobs_dir / "j1" / "attempt-0" / "algo-1"
    assert algo1.folder.read_config() == config  # what the agent will read
    run = world.job("j1").run
    assert [i.host for i in run.instances] == ["algo-1", "algo-2"]
    assert run.placement == Resources(2, 8, 0) and run.backend == "local"


def test_phases_metrics_and_the_end_reach_the_store(world: World) -> None:
    world.create("j1", metrics=(("loss", r"loss=([0-9.]+)"),))
    world.scheduler.tick()
    (algo1,) = world.backend.instances()
    algo1.phase("Downloading")
    world.clock.advance(2)
    algo1.phase("Training").log("epoch 1 loss=0.9", "epoch 2 loss=0.4")
    world.scheduler.tick()
    job = world.job("j1")
    assert job.state.secondary == SecondaryStatus.TRAINING
    assert job.run.metric_steps == {"loss": 2}
    world.clock.advance(10)
    algo1.log("loss=0.25").end(artifacts={"model_artifacts": "s3://b/out/j1/output/model.tar.gz"})
    world.scheduler.tick()
    job = world.job("j1")
    assert job.state.status == TrainingJobStatus.COMPLETED
    assert [t.status for t in job.state.transitions] == [
        SecondaryStatus.STARTING,
        SecondaryStatus.DOWNLOADING,
        SecondaryStatus.TRAINING,
        SecondaryStatus.COMPLETED,
    ]
    assert job.state.ended == world.clock.now()
    assert job.run.model_artifacts == "s3://b/out/j1/output/model.tar.gz"
    assert (
        job.run.billing is not None and job.run.billing.billable_seconds == 12
    )  # started → ended, clock time
    assert [m["Value"] for m in job.run.final_metrics] == [0.25]
    assert job.run.exit_codes == (0,)
    assert not world.scheduler.tick()  # nothing active any more


def test_jobs_wait_for_capacity_oldest_first(world: World) -> None:
    world.create("big1", instance_type="ml.m5.xlarge")  # 4 vCPU: the whole fake
    world.clock.advance(1)
    world.create("big2", instance_type="ml.m5.xlarge")
    world.scheduler.tick()
    assert world.job("big2").state.secondary == SecondaryStatus.PENDING
    assert world.backend.demanded == [Resources(4, 16, 0)]
    world.backend.instances("big1")[0].end()
    world.scheduler.tick()  # big1 ends in this pass, and its capacity goes to big2 in the same one
    assert world.job("big1").state.status.is_terminal
    assert world.backend.instances("big2")
    assert world.job("big2").run.launched


def test_a_backend_out_of_reach_keeps_jobs_pending(world: World) -> None:
    world.backend.is_available = False
    world.create("j1")
    world.scheduler.tick()
    assert world.job("j1").state.secondary == SecondaryStatus.PENDING and not world.backend.launched


def test_a_type_larger_than_the_backend_fails_naming_the_capacity(world: World) -> None:
    world.backend.set_capacity(Resources(2, 8, 0))  # smaller than at creation (a machine went away)
    world.create("huge", instance_type="ml.m5.large", count=1)
    world.backend.set_capacity(Resources(1, 2, 0))
    world.scheduler.tick()
    job = world.job("huge")
    assert job.state.status == TrainingJobStatus.FAILED
    assert job.state.failure_reason is not None and job.state.failure_reason.startswith("CapacityError:")


def test_one_failed_instance_fails_the_job_naming_its_host(world: World) -> None:
    world.create("j1", count=2)
    world.scheduler.tick()
    algo1, algo2 = world.backend.instances()
    algo1.end(Outcome.STOPPED, exit_code=None)
    algo2.end(Outcome.FAILED, exit_code=1, failure_reason="AlgorithmError: bad")
    world.scheduler.tick()
    job = world.job("j1")
    assert job.state.status == TrainingJobStatus.FAILED
    assert job.state.failure_reason == "algo-2: AlgorithmError: bad"
    assert job.run.exit_codes == (None, 1)


def test_a_stop_signals_agents_once_they_have_reported(world: World) -> None:
    world.create("j1")
    world.scheduler.tick()
    (algo1,) = world.backend.instances()
    world.training.stop("j1")
    world.scheduler.tick()
    assert algo1.signals == []  # no status yet: a SIGTERM would kill it before it could save
    algo1.start()
    world.scheduler.tick()  # signalled; the fake answers Stopped as an agent does
    assert algo1.signals == [signal.SIGTERM]
    world.scheduler.tick()
    job = world.job("j1")
    assert job.state.status == TrainingJobStatus.STOPPED and job.run.stop_signalled
    world.scheduler.tick()
    assert algo1.signals == [signal.SIGTERM]  # once


def test_a_stop_of_instances_not_yet_placed_ends_them_at_once(world: World) -> None:
    world.create("j1")
    world.scheduler.tick()
    (algo1,) = world.backend.instances()
    algo1.placed = False
    world.training.stop("j1")
    world.scheduler.tick()
    assert set(algo1.signals) == {signal.SIGKILL}  # nothing to save: no SIGTERM first
    job = world.job("j1")
    assert job.state.status == TrainingJobStatus.STOPPED and job.state.failure_reason is None


def test_a_stop_before_launch_stops_without_launching(world: World) -> None:
    world.backend.is_available = False
    world.create("j1")
    world.training.stop("j1")
    world.scheduler.tick()
    assert world.job("j1").state.status == TrainingJobStatus.STOPPED and not world.backend.launched


def test_a_lost_instance_is_retried_in_a_new_attempt_folder(world: World) -> None:
    world.create("j1", count=2, retries=1)
    world.scheduler.tick()
    algo1, algo2 = world.backend.instances()
    algo1.start()
    algo2.die(lost="node n2 died")
    world.scheduler.tick()
    assert signal.SIGKILL in algo1.signals  # the attempt's other instances end with it
    job = world.job("j1")
    assert job.run.attempt == 1 and not job.run.launched
    assert (
        job.state.status == TrainingJobStatus.IN_PROGRESS and job.state.secondary == SecondaryStatus.STARTING
    )
    world.scheduler.tick()
    retried = world.backend.instances()
    assert retried[0].folder.path == world.jobs_dir / "j1" / "attempt-1" / "algo-1"
    for instance in retried:
        instance.end()
    world.scheduler.tick()
    assert world.job("j1").state.status == TrainingJobStatus.COMPLETED


def test_a_lost_instance_without_retries_fails_the_job_saying_why(world: World) -> None:
    world.create("j1")
    world.scheduler.tick()
    (algo1,) = world.backend.instances()
    algo1.die()
    world.scheduler.tick()
    job = world.job("j1")
    assert job.state.status == TrainingJobStatus.FAILED
    assert "instance agent of algo-1 exited without reporting an outcome" in (job.state.failure_reason or "")


def test_max_runtime_exceeded_stops_the_job_with_its_message(world: World) -> None:
    world.create("j1")
    world.scheduler.tick()
    world.backend.instances()[0].end(
        Outcome.MAX_RUNTIME, exit_code=None, failure_reason="MaxRuntimeExceeded: 3600 s"
    )
    world.scheduler.tick()
    job = world.job("j1")
    assert (job.state.status, job.state.secondary) == (
        TrainingJobStatus.STOPPED,
        SecondaryStatus.MAX_RUNTIME_EXCEEDED,
    )
    assert job.state.transitions[-1].message == "MaxRuntimeExceeded: 3600 s"


def test_utilization_samples_are_stored_once(world: World) -> None:
    world.create("j1")
    world.scheduler.tick()
    (algo1,) = world.backend.instances()
    algo1.start().sample(50.0, 20.0, 2**30)
    world.scheduler.tick()
    world.scheduler.tick()
    since = world.clock.now() - dt.timedelta(hours=1)
    assert world.utilization.peaks("training", since)["j1"][2] == 1


def test_a_gpu_type_on_a_backend_without_gpus_is_refused_at_creation_saying_why(world: World) -> None:
    with pytest.raises(ValidationError, match=r"ml\.g5\.xlarge has 1 GPU.*no GPU on this fake") as refused:
        world.create("gpu", instance_type="ml.g5.xlarge")
    assert refused.value.value == "ml.g5.xlarge"
    with pytest.raises(NotFoundError):
        world.job("gpu")  # nothing stored
