"""Costs from the cluster: what Slurm's sacct billed a job attempt (its Elapsed, what each node was
allocated) replaces the ledger's own time, priced at the site's rates, with SageMaker's price of
the type beside it, whichever of Slurm and Shipyard sees the attempt end first."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest

from shipyard.core.catalog import InstanceCatalog, JobKind
from shipyard.core.clock import ManualClock
from shipyard.core.jobs import Job, JobRun, JobState
from shipyard.core.placement import Resources
from shipyard.core.pricing import Rates
from shipyard.core.slurm import SlurmRequest, memory_mib, parse_usage
from shipyard.core.training import TrainingJobSpec
from shipyard.errors import ValidationError
from shipyard.services.costs import CostService
from shipyard.store import UsageRepository
from shipyard.store._db import Database
from tests.unit._services import params

T0 = dt.datetime(2026, 12, 7, 9, 0, tzinfo=dt.UTC)
ASKED = SlurmRequest(nodes=2, cpus_per_task=4, memory_mib=8192, gres="gpu:a10g:1")
CATALOG = InstanceCatalog.load()


def test_sacct_usage_from_alloc_tres_is_per_node() -> None:
    out = "41|2026-12-07T10:00:00|00:01:40|billing=8,cpu=8,gres/gpu=2,mem=16G,node=2|8|2\n"
    usage = parse_usage(out, "41", ASKED)
    assert usage is not None
    assert (usage.start, usage.elapsed_seconds, usage.nodes, usage.source) == (
        "2026-12-07T10:00:00",
        100,
        2,
        "AllocTRES",
    )
    assert usage.per_node == Resources(4, 8, 1)


def test_without_alloc_tres_the_job_completion_logs_ncpus_and_the_request() -> None:
    usage = parse_usage("41|2026-12-07T10:00:00|00:00:07||6|2\n", "41", ASKED)
    assert usage is not None and usage.source == "NCPUS"
    assert usage.per_node == Resources(3, 8, 1)  # NCPUS over the nodes; memory and GPUs as asked


def test_a_job_sacct_does_not_show_or_that_never_started_has_no_usage() -> None:
    assert parse_usage("", "41", ASKED) is None
    assert parse_usage("42|2026-12-07T10:00:00|00:00:07||6|2\n", "41", ASKED) is None
    assert parse_usage("41|Unknown|00:00:00||0|2\n", "41", ASKED) is None


def test_tres_memory_units() -> None:
    assert [memory_mib(t) for t in ("1000M", "1.5G", "512K", "2T", "300")] == [
        1000,
        1536,
        0.5,
        2 * 1024**2,
        300,
    ]
    with pytest.raises(
        ValidationError, match="AllocTRES's mem must be a number with K, M, G or T, got '1GB'"
    ):
        memory_mib("1GB")


def test_the_site_prices_what_slurm_allocated_at_its_resource_rates() -> None:
    m5 = CATALOG.get("ml.m5.xlarge")  # 4 vCPUs, 16 GiB
    rates = Rates(vcpu_hour=Decimal("0.01"), memory_gib_hour=Decimal("0.001"), gpu_hour=Decimal("0.5"))
    more = rates.allocated(m5, Resources(8, 32, 1), JobKind.TRAINING, CATALOG)  # the site's table asks more
    assert more.site == Decimal("0.08") + Decimal("0.032") + Decimal("0.5")
    assert more.sagemaker == m5.price_per_hour(JobKind.TRAINING)
    typed = Rates(instance_types={"ml.m5.xlarge": Decimal("0.05")}, vcpu_hour=Decimal("1"))
    assert typed.allocated(m5, Resources(8, 32), JobKind.TRAINING, CATALOG).site == Decimal("0.05")
    sagemakers = Rates().allocated(m5, Resources(4, 16), JobKind.TRAINING, CATALOG)
    assert sagemakers.site == sagemakers.sagemaker == m5.price_per_hour(JobKind.TRAINING)


@pytest.fixture
def costs(tmp_path: Path, template_db: Path) -> Iterator[CostService]:
    path = tmp_path / "shipyard.db"
    path.write_bytes(template_db.read_bytes())
    db = Database(f"sqlite:///{path}")
    rates = Rates(vcpu_hour=Decimal("0.01"), memory_gib_hour=Decimal("0.001"))
    yield CostService(
        UsageRepository(db),
        CATALOG,
        rates,
        tags=lambda arn: {},
        bucket_sizes=lambda: {},
        clock=ManualClock(T0),
    )
    db.engine.dispose()


def _job() -> Job[TrainingJobSpec]:
    spec = TrainingJobSpec.from_request(params("j", count=2, instance_type="ml.m5.xlarge"))
    return Job(spec, "arn:aws:sagemaker:us-east-1:0:training-job/j", T0, JobState.new(T0), JobRun())


# Shipyard saw the attempt work 60 s; Slurm allocated its nodes 100 s, each 2 CPUs and 4 GiB.
SLURM = {"started": T0 - dt.timedelta(seconds=10), "ended": T0 + dt.timedelta(seconds=90)}
PER_NODE = Resources(2, 4)
SITE_PER_HOUR = Decimal("0.02") + Decimal("0.004")


def _check_billed_by_slurm(costs: CostService) -> None:
    (interval,) = costs.usage.for_resource("training", "j")
    assert (interval.started, interval.ended) == (SLURM["started"], SLURM["ended"])
    assert interval.usd_per_hour == SITE_PER_HOUR
    sagemaker = CATALOG.get("ml.m5.xlarge").price_per_hour(JobKind.TRAINING)
    assert interval.sagemaker_usd_per_hour == sagemaker  # the same work on SageMaker
    assert interval.cost(now=T0) == SITE_PER_HOUR * 2 * 100 / 3600
    assert interval.sagemaker_cost(now=T0) == sagemaker * 2 * 100 / 3600


def test_slurms_bill_after_the_job_ended_rebills_its_interval(costs: CostService) -> None:
    job = _job()
    costs.job_ended(job, T0, T0 + dt.timedelta(seconds=60))
    costs.cluster_billed(costs.job_key(job), allocated=PER_NODE, **SLURM)
    _check_billed_by_slurm(costs)


def test_slurms_bill_before_the_job_ended_waits_for_it(costs: CostService) -> None:
    job = _job()
    costs.job_started(job, T0)
    costs.cluster_billed(costs.job_key(job), allocated=PER_NODE, **SLURM)
    (interval,) = costs.usage.for_resource("training", "j")
    assert interval.ended is None  # still Shipyard's, open
    cost, _ = costs.job_ended(job, T0, T0 + dt.timedelta(seconds=60))
    _check_billed_by_slurm(costs)
    assert cost == (SITE_PER_HOUR * 2 * 100 / 3600).quantize(Decimal("0.000001"))


def test_a_lost_attempt_is_billed_by_slurm_too(costs: CostService) -> None:
    job = _job()
    costs.job_started(job, T0)
    costs.cluster_billed(costs.job_key(job), allocated=PER_NODE, **SLURM)
    costs.attempt_lost(job, T0 + dt.timedelta(seconds=30))
    _check_billed_by_slurm(costs)
