"""Right-sizing GPU jobs (services/waste.py) on stored samples: a job whose GPUs sat idle is told a
type without GPUs would have done; one that used its GPU, or whose GPUs were not sampled, is not."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest

from shipyard.core.catalog import InstanceCatalog
from shipyard.core.jobs import Billing
from shipyard.core.pricing import Rates
from shipyard.core.training import TrainingJobStatus
from shipyard.services.costs import CostService
from shipyard.services.waste import WasteService
from shipyard.store import Database, UsageRepository
from shipyard.store.utilization import Sample, UtilizationRepository

NOW = dt.datetime(2026, 12, 1, 12, tzinfo=dt.UTC)


class Jobs:
    """The job service, as right-sizing reads it: finished training jobs by name."""

    repository = SimpleNamespace(kind="training")

    def __init__(self) -> None:
        self.jobs: dict[str, Any] = {}

    def add(self, name: str, instance_type: str, price: str) -> None:
        self.jobs[name] = SimpleNamespace(
            kind="training",
            name=name,
            state=SimpleNamespace(status=TrainingJobStatus.COMPLETED),
            run=SimpleNamespace(billing=Billing(3600, 3600, Decimal(price), Decimal(price), Decimal(price))),
            spec=SimpleNamespace(instance_type=instance_type, instance_count=1),
        )

    def describe(self, name: str) -> Any:
        return self.jobs[name]


@pytest.fixture
def setup(tmp_path: Path, template_db: Path) -> Any:
    path = tmp_path / "shipyard.db"
    path.write_bytes(template_db.read_bytes())
    db = Database(f"sqlite:///{path}")
    catalog = InstanceCatalog.load()
    costs = CostService(UsageRepository(db), catalog, Rates(), tags=lambda arn: {}, bucket_sizes=lambda: {})
    utilization = UtilizationRepository(db)
    jobs = Jobs()
    waste = WasteService(None, [jobs], costs, utilization, None, catalog)  # type: ignore[arg-type, list-item]
    yield jobs, utilization, waste
    db.engine.dispose()


def _sampled(utilization: UtilizationRepository, name: str, gpu: list[float | None]) -> None:
    utilization.add(
        "training",
        name,
        [
            Sample(
                "algo-1",
                NOW + dt.timedelta(seconds=i),
                40.0,
                5.0,
                2**30,
                1.0,
                g,
                1.0 if g is not None else None,
            )
            for i, g in enumerate(gpu)
        ],
    )


def _suggestions(waste: WasteService) -> dict[str, dict[str, Any]]:
    return {s["job"]: s for s in waste.right_sizing(NOW - dt.timedelta(hours=1))}


def test_a_gpu_that_sat_idle_is_a_right_sizing_suggestion(setup: Any) -> None:
    jobs, utilization, waste = setup
    jobs.add("idle", "ml.g5.xlarge", "1.408")
    _sampled(utilization, "idle", [0.0, 3.0, 1.0, 0.0])
    found = _suggestions(waste)["idle"]
    suggested = InstanceCatalog.load().get(found["suggested_instance_type"])
    assert suggested.gpu_count == 0 and suggested.vcpu >= 1  # a type without GPUs that fits its CPU
    assert found["peak_gpu_percent"] == 3.0 and Decimal(found["saving_usd"]) > 0
    assert "idle's 1 GPU sat idle (GPUUtilization peaked at 3.0%)" in found["reason"]


def test_a_gpu_in_use_or_not_sampled_is_not(setup: Any) -> None:
    jobs, utilization, waste = setup
    jobs.add("busy", "ml.g5.xlarge", "1.408")
    _sampled(utilization, "busy", [0.0, 85.0, 2.0, 0.0])  # one busy sample: it used its GPU
    jobs.add("unread", "ml.g5.xlarge", "1.408")
    _sampled(utilization, "unread", [None, None, None, None])  # no NVML: nothing known of its GPU
    jobs.add("short", "ml.g5.xlarge", "1.408")
    _sampled(utilization, "short", [0.0, 0.0, None, None])  # too few GPU samples to judge
    assert not {"busy", "unread", "short"} & set(_suggestions(waste))


def test_a_cpu_job_is_judged_as_before(setup: Any) -> None:
    jobs, utilization, waste = setup
    jobs.add("cpu", "ml.m5.4xlarge", "0.922")
    _sampled(utilization, "cpu", [None, None, None])
    found = _suggestions(waste)["cpu"]
    assert found["peak_gpu_percent"] is None and found["reason"].startswith("cpu peaked at 0.40 of 16 vCPUs")


def test_shipyard_waste_shows_the_idle_gpu(setup: Any, monkeypatch: pytest.MonkeyPatch, capsys: Any) -> None:
    from shipyard.cli import _costs

    jobs, utilization, waste = setup
    jobs.add("idle", "ml.g5.xlarge", "1.408")
    _sampled(utilization, "idle", [0.0, 3.0, 1.0, 0.0])
    found = {"idle_endpoints": [], "right_sizing": waste.right_sizing(NOW - dt.timedelta(hours=1))}
    monkeypatch.setattr(_costs, "_native", lambda *a, **k: found)
    monkeypatch.setenv("COLUMNS", "200")
    _costs.waste()
    shown = capsys.readouterr().out
    assert "peak GPU" in shown and "3% (idle)" in shown and "ml.g5.xlarge" in shown
