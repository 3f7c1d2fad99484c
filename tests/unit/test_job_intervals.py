"""A job attempt's ledger interval: opened when its instances are seen working, made exact when it
ends. What the interval is made of (its prices, its tags, looked up in the store) is read once:
at its start, or at its end for an attempt that ended before it was seen working."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path

import pytest

from shipyard.core.catalog import InstanceCatalog
from shipyard.core.clock import ManualClock
from shipyard.core.jobs import Job, JobRun, JobState
from shipyard.core.pricing import Rates
from shipyard.core.training import TrainingJobSpec
from shipyard.services.costs import CostService
from shipyard.store import UsageRepository
from shipyard.store._db import Database
from tests.unit._services import params
from tests.unit.test_costs import T0

MINUTE = dt.timedelta(minutes=1)


@pytest.fixture
def looked_up(tmp_path: Path, template_db: Path) -> Iterator[tuple[CostService, list[str]]]:
    path = tmp_path / "shipyard.db"
    path.write_bytes(template_db.read_bytes())
    db = Database(f"sqlite:///{path}")
    arns: list[str] = []

    def tags(arn: str) -> dict[str, str]:
        arns.append(arn)
        return {"team": "vision"}

    yield (
        CostService(
            UsageRepository(db),
            InstanceCatalog.load(),
            Rates(),
            tags=tags,
            bucket_sizes=lambda: {},
            clock=ManualClock(T0 + 10 * MINUTE),
        ),
        arns,
    )
    db.engine.dispose()


def _job(name: str) -> Job[TrainingJobSpec]:
    spec = TrainingJobSpec.from_request(params(name))
    return Job(spec, f"arn:aws:sagemaker:us-east-1:0:training-job/{name}", T0, JobState.new(T0), JobRun())


def test_an_attempt_seen_working_is_settled_without_looking_its_tags_up_again(
    looked_up: tuple[CostService, list[str]],
) -> None:
    costs, arns = looked_up
    job = _job("seen")
    costs.job_started(job, T0)
    site, _ = costs.job_ended(job, T0, T0 + 2 * MINUTE)
    assert arns == [job.arn]
    [interval] = costs.usage.for_resource(job.kind, job.name)
    assert (interval.started, interval.ended, interval.tags) == (T0, T0 + 2 * MINUTE, {"team": "vision"})
    assert site > 0


def test_an_attempt_that_ended_unseen_is_recorded_with_its_tags(
    looked_up: tuple[CostService, list[str]],
) -> None:
    costs, arns = looked_up
    job = _job("unseen")
    costs.job_ended(job, T0, T0 + MINUTE)
    assert arns == [job.arn]
    [interval] = costs.usage.for_resource(job.kind, job.name)
    assert (interval.ended, interval.tags) == (T0 + MINUTE, {"team": "vision"})
