"""GPU-hours in the ledger: each interval keeps its instances' GPUs as placed (a job scaled down to
fit, the GPUs it got), the reports sum GPU-seconds beside instance-seconds, intervals recorded
before the ledger kept GPUs count their type's, and ``shipyard cost`` shows a GPU-hours column."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.core.catalog import InstanceCatalog, JobKind
from shipyard.core.clock import ManualClock
from shipyard.core.costs import allocate
from shipyard.core.jobs import Job, JobRun, JobState
from shipyard.core.placement import Resources
from shipyard.core.pricing import Rates
from shipyard.core.training import TrainingJobSpec
from shipyard.services.costs import CostService
from shipyard.store import UsageRepository
from shipyard.store._db import Database
from tests.unit._services import params
from tests.unit.test_costs import T0, _interval

HOUR = dt.timedelta(hours=1)


def test_gpu_seconds_are_unit_seconds_times_each_units_gpus() -> None:
    rows = allocate(
        [
            _interval("big", 1, count=2, instance_type="ml.g5.12xlarge", gpus=4),
            _interval("small", 2, instance_type="ml.g5.xlarge", gpus=1),
            _interval("cpu", 1, gpus=0),
            _interval("unknown", 1, gpus=None),  # not recorded: none counted here
        ],
        ["instance_type"],
        start=T0,
        end=T0 + dt.timedelta(days=1),
        now=T0 + dt.timedelta(days=1),
    )
    gpu_seconds = {r["instance_type"]: r["gpu_seconds"] for r in rows}
    assert gpu_seconds == {"ml.g5.12xlarge": 8 * 3600.0, "ml.g5.xlarge": 2 * 3600.0, "ml.m5.large": 0.0}


@pytest.fixture
def costs(tmp_path: Path, template_db: Path) -> Iterator[CostService]:
    path = tmp_path / "shipyard.db"
    path.write_bytes(template_db.read_bytes())
    db = Database(f"sqlite:///{path}")
    yield CostService(
        UsageRepository(db),
        InstanceCatalog.load(),
        Rates(),
        tags=lambda arn: {},
        bucket_sizes=lambda: {},
        clock=ManualClock(T0 + 3 * HOUR),
    )
    db.engine.dispose()


def _job(name: str, instance_type: str, count: int, placement: Resources | None) -> Job[TrainingJobSpec]:
    spec = TrainingJobSpec.from_request(params(name, count=count, instance_type=instance_type))
    run = JobRun(placement=placement)
    return Job(spec, f"arn:aws:sagemaker:us-east-1:0:training-job/{name}", T0, JobState.new(T0), run)


def test_a_jobs_interval_keeps_the_gpus_it_was_given_and_the_report_sums_them(costs: CostService) -> None:
    # ml.g5.12xlarge has 4 GPUs; scaled down to fit, each of its 2 instances got 2
    scaled = _job("scaled", "ml.g5.12xlarge", 2, Resources(4, 16, 2))
    costs.job_ended(scaled, T0, T0 + HOUR)
    costs.job_ended(_job("cpu", "ml.m5.large", 1, Resources(2, 8, 0)), T0, T0 + HOUR)
    (interval,) = costs.usage.for_resource("training", "scaled")
    assert interval.gpus == 2
    rows = {r["resource"]: r for r in costs.report(["resource"], start=T0, end=T0 + 2 * HOUR)}
    assert rows["scaled"]["gpu_seconds"] == 2 * 2 * 3600.0 and rows["scaled"]["unit_seconds"] == 2 * 3600.0
    assert rows["cpu"]["gpu_seconds"] == 0.0


def test_intervals_from_before_the_ledger_kept_gpus_count_their_types(costs: CostService) -> None:
    old = _interval("old", 1, instance_type="ml.g5.xlarge", gpus=None, ended=None)
    costs.usage.open(old)
    costs.usage.close("old", T0 + HOUR)
    (stored,) = costs.usage.for_resource("training", "old")
    assert stored.gpus is None  # as such a row reads
    [row] = costs.report(["resource"], start=T0, end=T0 + 2 * HOUR)
    assert row["gpu_seconds"] == 3600.0  # ml.g5.xlarge's 1 GPU
    intervals, _ = costs.ledger(T0, T0 + 2 * HOUR)
    assert [i.gpus for i in intervals] == [1]


def test_an_endpoints_instances_have_their_types_gpus(costs: CostService) -> None:
    costs.instances_started(
        "endpoint/e/1", kind="endpoint", name="e", arn="arn:e", instance_type="ml.g5.2xlarge", count=2,
        work=JobKind.HOSTING,
        at=T0,
    )  # fmt: skip
    (interval,) = costs.usage.for_resource("endpoint", "e")
    assert interval.gpus == 1


def test_shipyard_cost_shows_gpu_hours(monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    from shipyard.cli import _costs

    report = {
        "start": "2026-12-01T00:00:00+00:00",
        "end": "2026-12-07T00:00:00+00:00",
        "group_by": ["instance_type"],
        "rows": [
            {"instance_type": "ml.g5.12xlarge", "unit_seconds": 7200.0, "gpu_seconds": 14400.0,
             "cost_usd": "14.186667", "sagemaker_cost_usd": "14.186667"},
            {"instance_type": "ml.m5.large", "unit_seconds": 3600.0, "gpu_seconds": 0.0,
             "cost_usd": "0.115000", "sagemaker_cost_usd": "0.115000"},
        ],
        "total": {"unit_seconds": 10800.0, "gpu_seconds": 14400.0, "cost_usd": "14.301667",
                  "sagemaker_cost_usd": "14.301667"},
    }  # fmt: skip

    class Answer:
        def raise_for_status(self) -> None:
            pass

        def json(self) -> dict[str, Any]:
            return report

    class Connection:
        def request(self, *args: Any, **kwargs: Any) -> Answer:
            return Answer()

    monkeypatch.setattr("shipyard.sdk.connect", lambda url=None: Connection())
    monkeypatch.setenv("COLUMNS", "200")
    _costs.cost(by=["instance_type"])
    shown = capsys.readouterr().out
    assert "GPU-hours" in shown
    line = next(line for line in shown.splitlines() if "ml.g5.12xlarge" in line)
    assert "2.000" in line and "4.000" in line  # 2 instance-hours, 4 GPU-hours
