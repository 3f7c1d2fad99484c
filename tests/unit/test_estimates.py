"""Launch estimates priced as the site will charge: a job that fit-to-machine scales down is
estimated at the type that gives what each instance will be granted, beside SageMaker's price
of the type asked (core/estimates.py, Rates.placed, CostService.launch_price), on a fake backend."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from shipyard.compute import Backend
from shipyard.core import estimates
from shipyard.core.catalog import InstanceCatalog, JobKind
from shipyard.core.placement import Resources
from shipyard.core.pricing import Rates
from shipyard.services.costs import CostService
from shipyard.store import Database, UsageRepository
from shipyard.testing import FakeBackend

CATALOG = InstanceCatalog.load()


def _costs(tmp_path: Path, backend: Backend) -> CostService:
    db = Database(f"sqlite:///{tmp_path}/costs.db")
    return CostService(
        UsageRepository(db),
        CATALOG,
        Rates(),
        tags=lambda arn: {},
        bucket_sizes=dict,
        capacity=lambda instance_type: (backend.capacity, backend.largest_node),
    )


def _training(instance_type: str, count: int = 1, seconds: int | None = 3600) -> dict[str, Any]:
    request: dict[str, Any] = {"ResourceConfig": {"InstanceType": instance_type, "InstanceCount": count}}
    if seconds is not None:
        request["StoppingCondition"] = {"MaxRuntimeInSeconds": seconds}
    return request


@pytest.fixture
def small(tmp_path: Path) -> CostService:
    """The costs of a site whose one machine has 4 vCPUs, 16 GiB and no GPU."""
    return _costs(tmp_path, FakeBackend(Resources(4, 16, 0)))


def test_a_job_too_big_for_the_machine_is_estimated_as_what_it_will_be_granted(small: CostService) -> None:
    # an ml.p4d.24xlarge (96 vCPUs, 1152 GiB, 8 GPUs; 37.688 an hour) is given 4 vCPUs and 16 GiB:
    # an ml.m5.xlarge's worth (0.23), and SageMaker's price of what was asked beside it
    found = estimates.training(_training("ml.p4d.24xlarge"), small.launch_price)
    assert (found.per_hour_usd, found.sagemaker_per_hour_usd) == (Decimal("0.23"), Decimal("37.688"))
    assert (found.usd, found.sagemaker_usd, found.billed_as) == (
        Decimal("0.23"),
        Decimal("37.688"),
        "ml.m5.xlarge",
    )
    assert found.basis == "1 x ml.p4d.24xlarge x 1 h, as ml.m5.xlarge, what this machine gives it"
    shown = found.to_json()
    assert shown["billed_as"] == "ml.m5.xlarge" and shown["sagemaker_usd"] == "37.688000"
    # SageMaker's default day: $5.52 here, not the $904.51 SageMaker would charge for it
    day = estimates.training(_training("ml.p4d.24xlarge", seconds=None), small.launch_price)
    assert (day.usd, day.sagemaker_usd) == (Decimal("5.52"), Decimal("904.512"))


def test_the_instance_count_shares_the_machine_between_a_jobs_instances(small: CostService) -> None:
    # 2 x ml.m5.4xlarge (16 vCPUs, 64 GiB each) on 4 vCPUs and 16 GiB: each gets 2 and 8, an ml.m5.large
    found = estimates.processing(
        {
            "ProcessingResources": {"ClusterConfig": {"InstanceType": "ml.m5.4xlarge", "InstanceCount": 2}},
            "StoppingCondition": {"MaxRuntimeInSeconds": 1800},
        },
        small.launch_price,
    )
    assert (found.per_hour_usd, found.sagemaker_per_hour_usd) == (Decimal("0.230"), Decimal("1.844"))
    assert found.basis == "2 x ml.m5.4xlarge x 30 min, as ml.m5.large, what this machine gives it"
    one = small.launch_price("ml.m5.4xlarge", JobKind.PROCESSING, 1)  # alone, it gets the whole machine
    assert (one.site, one.billed_as) == (Decimal("0.23"), "ml.m5.xlarge")


def test_a_job_that_fits_is_estimated_as_it_asked(small: CostService) -> None:
    found = estimates.training(_training("ml.m5.large", count=2), small.launch_price)
    assert (found.per_hour_usd, found.billed_as, found.basis) == (
        Decimal("0.230"),
        None,
        "2 x ml.m5.large x 1 h",
    )
    assert found.to_json()["billed_as"] is None
    transform = estimates.transform(
        {"TransformResources": {"InstanceType": "ml.m5.xlarge", "InstanceCount": 1}}, small.launch_price
    )
    assert transform.billed_as is None and transform.per_hour_usd == Decimal("0.23")


def test_a_tuning_jobs_trials_are_each_estimated_as_they_will_be_granted(small: CostService) -> None:
    definition = _training("ml.p4d.24xlarge")
    request = {
        "HyperParameterTuningJobConfig": {
            "ResourceLimits": {"MaxNumberOfTrainingJobs": 3, "MaxParallelTrainingJobs": 2}
        },
        "TrainingJobDefinition": definition,
    }
    found = estimates.tuning(request, small.launch_price)
    assert (found.usd, found.sagemaker_usd, found.billed_as) == (
        Decimal("0.69"),
        Decimal("113.064"),
        "ml.m5.xlarge",
    )
    assert found.basis == "3 trials x 1 x ml.p4d.24xlarge x 1 h, as ml.m5.xlarge, what this machine gives it"
    request["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxRuntimeInSeconds"] = 1800
    by_time = estimates.tuning(request, small.launch_price)
    assert by_time.usd == Decimal("0.23")  # 2 at a time for 30 min
    assert by_time.basis == "2 trials at a time x 30 min, as ml.m5.xlarge, what this machine gives it"


def test_an_endpoint_is_estimated_as_asked_as_it_is_charged(small: CostService) -> None:
    found = estimates.endpoint(
        [{"InstanceType": "ml.m5.4xlarge", "InitialInstanceCount": 1}], small.launch_price
    )
    assert (found.per_hour_usd, found.billed_as) == (Decimal("0.922"), None)


def test_a_launch_that_waits_for_a_machine_or_can_never_run_is_priced_as_asked() -> None:
    p4d, rates = CATALOG.get("ml.p4d.24xlarge"), Rates()
    asked = rates.instance(p4d, JobKind.TRAINING)
    # a cluster scaled to zero grants what is asked once a machine comes
    none_yet = rates.placed(p4d, 1, JobKind.TRAINING, CATALOG, capacity=Resources(0, 0, 0))
    assert none_yet == asked
    # without fit-to-machine it is refused at creation; its estimate is the type asked
    refused = rates.placed(
        p4d, 1, JobKind.TRAINING, CATALOG, capacity=Resources(4, 16, 0), fit_to_machine=False
    )
    assert refused == asked
    # a larger cluster whose largest machine is smaller than the type: each gets one machine
    share = rates.placed(
        p4d, 2, JobKind.TRAINING, CATALOG, capacity=Resources(64, 256, 0), node=Resources(8, 32, 0)
    )
    assert (share.site, share.sagemaker, share.billed_as) == (
        Decimal("0.461"),
        Decimal("37.688"),
        "ml.m5.2xlarge",
    )


def test_without_the_backends_capacity_launches_are_priced_as_asked(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path}/costs.db")
    costs = CostService(UsageRepository(db), CATALOG, Rates(), tags=lambda arn: {}, bucket_sizes=dict)
    assert costs.launch_price("ml.p4d.24xlarge", JobKind.TRAINING, 1).site == Decimal("37.688")
