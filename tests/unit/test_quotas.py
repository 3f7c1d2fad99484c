"""Site quotas: the pure rules (core/quotas.py) and the services that check them at create, on a
FakeBackend and a temporary SQLite store. A request past a quota is refused at once, naming the
limit, its value and what was asked, and nothing of it reaches the scheduler."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.compute import Backends
from shipyard.config import Settings
from shipyard.core.catalog import InstanceCatalog
from shipyard.core.placement import Resources
from shipyard.core.pricing import Rates
from shipyard.core.quotas import Quotas
from shipyard.envs import ImageResolver
from shipyard.errors import ConfigurationError, LimitExceededError, NotFoundError, ResourceLimitExceeded
from shipyard.runtime.contract import StoreAccess
from shipyard.services.costs import CostService
from shipyard.services.endpoints import EndpointConfigService, EndpointService, ModelService
from shipyard.services.jobs import ProcessingService, TrainingService, active_instances
from shipyard.services.scheduler import AgentSettings, JobScheduler
from shipyard.services.tagging import TaggingService
from shipyard.services.tuning import TuningService
from shipyard.store import (
    Database,
    ProcessingJobRepository,
    ResourceRepository,
    TagRepository,
    TrainingJobRepository,
    TransformJobRepository,
    TuningJobRepository,
    UsageRepository,
)
from shipyard.store.utilization import UtilizationRepository
from shipyard.testing import FakeBackend, FakeModelServers, InlineExecutor, ManualClock
from tests.unit._services import SKLEARN, params
from tests.unit.test_tuning_service import tuning_request

REGION = "us-east-1"


# -- the rules --------------------------------------------------------------------------------------
def test_a_million_instances_is_refused_in_sagemakers_words_naming_the_setting() -> None:
    with pytest.raises(ResourceLimitExceeded) as refused:
        Quotas().check_job("training", 1_000_000, in_use=0)
    assert refused.value.message == (
        "The account-level service limit 'Number of instances per training job' is 20 Instances, with "
        "current utilization of 0 Instances and a request delta of 1000000 Instances. The site sets this "
        "limit: ask its administrator to raise max_instances_per_job (SHIPYARD_MAX_INSTANCES_PER_JOB)."
    )
    assert isinstance(refused.value, LimitExceededError)  # SageMaker's ResourceLimitExceeded, 400


@pytest.mark.parametrize(
    ("check", "limit", "value", "used", "delta", "setting"),
    [
        (
            lambda q: q.check_job("processing", 4, in_use=3),
            "Number of instances across all training, processing and transform jobs",
            6,
            3,
            4,
            "max_job_instances",
        ),
        (
            lambda q: q.check_tuning(8, 2, [1]),
            "Number of training jobs per hyperparameter tuning job",
            7,
            0,
            8,
            "max_tuning_training_jobs",
        ),
        (
            lambda q: q.check_tuning(7, 4, [1]),
            "Number of parallel training jobs per hyperparameter tuning job",
            3,
            0,
            4,
            "max_tuning_parallel_jobs",
        ),
        (
            lambda q: q.check_tuning(7, 3, [1, 5]),
            "Number of instances per training job",
            4,
            0,
            5,
            "max_instances_per_job",
        ),
        (
            lambda q: q.check_variant("ml.m5.large", 3),
            "ml.m5.large instances per endpoint variant",
            2,
            0,
            3,
            "max_instances_per_variant",
        ),
        (
            lambda q: q.check_endpoint(2, in_use=4),
            "Number of instances across all endpoints",
            5,
            4,
            2,
            "max_endpoint_instances",
        ),
    ],
)
def test_each_rule_names_its_limit_value_utilization_and_request(
    check: Any, limit: str, value: int, used: int, delta: int, setting: str
) -> None:
    quotas = Quotas(
        instances_per_job=4,
        job_instances=6,
        tuning_training_jobs=7,
        tuning_parallel_jobs=3,
        instances_per_variant=2,
        endpoint_instances=5,
    )
    with pytest.raises(ResourceLimitExceeded) as refused:
        check(quotas)
    assert (refused.value.limit, refused.value.value, refused.value.used, refused.value.delta) == (
        limit,
        value,
        used,
        delta,
    )
    assert f"'{limit}' is {value} " in refused.value.message
    assert f"request delta of {delta} " in refused.value.message
    assert f"{setting} (SHIPYARD_{setting.upper()})" in refused.value.message


def test_requests_at_the_limits_pass_and_trials_are_not_counted_against_active_instances() -> None:
    quotas = Quotas(instances_per_job=4, job_instances=6, tuning_training_jobs=7, tuning_parallel_jobs=3)
    quotas.check_job("training", 4, in_use=2)
    quotas.check_job("training", 4, in_use=None)  # a trial: its tuning job was checked
    quotas.check_tuning(7, 3, [4, 1])
    quotas.check_variant("ml.m5.large", 20)
    quotas.check_endpoint(100, in_use=0)


def test_the_quotas_are_site_settings_from_every_source(tmp_path: Path) -> None:
    (tmp_path / "config.toml").write_text("max_instances_per_job = 3\nmax_endpoint_instances = 9\n")
    settings = Settings.load(
        {"data_dir": tmp_path, "max_tuning_parallel_jobs": 4}, environ={"SHIPYARD_MAX_JOB_INSTANCES": "8"}
    )
    assert settings.quotas == Quotas(
        instances_per_job=3, job_instances=8, tuning_parallel_jobs=4, endpoint_instances=9
    )
    assert Settings(data_dir=tmp_path).quotas == Quotas()  # SageMaker's defaults
    with pytest.raises(ConfigurationError, match="max_job_instances must be at least 1, got 0"):
        Settings(data_dir=tmp_path, max_job_instances=0)


# -- the services -----------------------------------------------------------------------------------
QUOTAS = Quotas(job_instances=3, tuning_training_jobs=5, tuning_parallel_jobs=2, endpoint_instances=3)


@dataclasses.dataclass
class Site:
    scheduler: JobScheduler
    training: TrainingService
    processing: ProcessingService
    tuning: TuningService
    configs: EndpointConfigService
    endpoints: EndpointService


@pytest.fixture
def site(tmp_path: Path, template_db: Path) -> Iterator[Site]:
    db_path = tmp_path / "shipyard.db"
    db_path.write_bytes(template_db.read_bytes())
    db = Database(f"sqlite:///{db_path}")
    clock = ManualClock()
    catalog = InstanceCatalog.load()
    backends = Backends(FakeBackend(Resources(64, 256, 0), clock=clock))
    costs = CostService(UsageRepository(db), catalog, Rates(), tags=lambda arn: {}, bucket_sizes=dict)
    repositories = [TrainingJobRepository(db), ProcessingJobRepository(db), TransformJobRepository(db)]
    scheduler = JobScheduler(
        repositories,
        backends,
        catalog,
        costs,
        UtilizationRepository(db),
        AgentSettings(
            jobs_dir=tmp_path / "jobs", object_store=StoreAccess("local", root=str(tmp_path / "objects"))
        ),
        fit_to_machine=True,  # as the server runs: a count no machine holds is not refused by placement
        clock=clock,
    )
    common: dict[str, Any] = {
        "catalog": catalog,
        "tagging": TaggingService(TagRepository(db)),
        "resolver": ImageResolver.load(tmp_path),
        "account_id": "000000000000",
        "backend_for": backends.for_type,
        "fit_to_machine": True,
        "wake": scheduler.wake,
        "clock": clock,
        "quotas": QUOTAS,
        "in_use": lambda: active_instances(repositories),
    }
    training = TrainingService(repositories[0], **common)
    processing = ProcessingService(repositories[1], **common)
    tuning = TuningService(
        TuningJobRepository(db), training, account_id="000000000000", clock=clock, quotas=QUOTAS
    )
    models = ModelService(ResourceRepository(db, "model", "Model"), ImageResolver(), account_id="0")
    models.create(
        {"ModelName": "m", "PrimaryContainer": {"Image": SKLEARN, "ModelDataUrl": "s3://m/model.tar.gz"}},
        region=REGION,
    )
    configs = EndpointConfigService(
        ResourceRepository(db, "endpoint-config", "Endpoint configuration"),
        models,
        catalog,
        account_id="0",
        quotas=QUOTAS,
    )
    endpoints = EndpointService(
        ResourceRepository(db, "endpoint", "Endpoint"),
        configs,
        models,
        lambda instance_type: FakeModelServers(),
        ImageResolver(),
        costs,
        endpoints_dir=tmp_path / "endpoints",
        account_id="0",
        clock=clock,
        workers=InlineExecutor(),
        quotas=QUOTAS,
    )
    yield Site(scheduler, training, processing, tuning, configs, endpoints)
    endpoints.close()
    db.engine.dispose()


def _processing(name: str, count: int) -> dict[str, Any]:
    return {
        "ProcessingJobName": name,
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": count, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}
        },
        "AppSpecification": {"ImageUri": SKLEARN, "ContainerEntrypoint": ["python3", "-c", "pass"]},
        "RoleArn": "arn:aws:iam::000000000000:role/r",
    }


def test_a_training_job_of_a_million_instances_is_refused_at_create_and_never_scheduled(site: Site) -> None:
    with pytest.raises(ResourceLimitExceeded, match="request delta of 1000000 Instances"):
        site.training.create(params("huge", count=1_000_000), region=REGION)
    with pytest.raises(ResourceLimitExceeded, match="'Number of instances per processing job' is 20"):
        site.processing.create(_processing("huge", 21), region=REGION)
    with pytest.raises(NotFoundError):
        site.training.describe("huge")
    assert site.scheduler.tick() is False  # nothing active: the scheduler has nothing to place


def test_creates_past_the_active_instances_of_every_kind_are_refused_until_jobs_end(site: Site) -> None:
    site.training.create(params("two", count=2), region=REGION)
    with pytest.raises(ResourceLimitExceeded) as refused:
        site.processing.create(_processing("two-more", 2), region=REGION)
    assert (
        "with current utilization of 2 Instances and a request delta of 2 Instances" in refused.value.message
    )
    site.processing.create(_processing("one-more", 1), region=REGION)  # 3 of 3
    site.training.stop("two")
    site.scheduler.tick()  # the stopped job ends; its instances are free again
    site.processing.create(_processing("two-more", 2), region=REGION)


def test_a_tuning_job_past_its_limits_is_refused_and_its_trials_are_not(site: Site) -> None:
    for request, limit in (
        (tuning_request("many", jobs=6, parallel=2), "Number of training jobs per hyperparameter tuning job"),
        (tuning_request("wide", jobs=5, parallel=3), "Number of parallel training jobs per"),
    ):
        with pytest.raises(ResourceLimitExceeded, match=limit):
            site.tuning.create(request, region=REGION)
    big = tuning_request("big", jobs=5, parallel=2)
    big["TrainingJobDefinition"]["ResourceConfig"]["InstanceCount"] = 21
    with pytest.raises(ResourceLimitExceeded, match="'Number of instances per training job' is 20"):
        site.tuning.create(big, region=REGION)
    site.training.create(params("busy", count=2), region=REGION)
    site.tuning.create(tuning_request("ok", jobs=5, parallel=2), region=REGION)
    site.tuning.tick()  # two trials while 2 of 3 instances are in use: trials are not refused
    job, trials = site.tuning.describe("ok")
    assert len(trials) == 2 and job.failure_reason is None
    with pytest.raises(ResourceLimitExceeded, match="current utilization of 4 Instances"):
        site.training.create(params("direct"), region=REGION)


def _config(name: str, *counts: int) -> dict[str, Any]:
    return {
        "EndpointConfigName": name,
        "ProductionVariants": [
            {
                "VariantName": f"v{i}",
                "ModelName": "m",
                "InitialInstanceCount": c,
                "InstanceType": "ml.m5.large",
            }
            for i, c in enumerate(counts)
        ],
    }


def test_endpoint_instances_are_refused_per_variant_and_across_endpoints(site: Site) -> None:
    with pytest.raises(ResourceLimitExceeded, match=r"'ml\.m5\.large instances per endpoint variant' is 20"):
        site.configs.create(_config("wide", 1, 21), region=REGION)
    site.configs.create(_config("two", 1, 1), region=REGION)
    site.endpoints.create({"EndpointName": "first", "EndpointConfigName": "two"}, region=REGION)
    with pytest.raises(ResourceLimitExceeded) as refused:
        site.endpoints.create({"EndpointName": "second", "EndpointConfigName": "two"}, region=REGION)
    assert refused.value.message.startswith(
        "The account-level service limit 'Number of instances across all endpoints' is 3 Instances, with "
        "current utilization of 2 Instances and a request delta of 2 Instances."
    )
    with pytest.raises(NotFoundError):
        site.endpoints.get("second")
    site.endpoints.tick()  # first is InService
    for desired, match in ((21, "per endpoint variant' is 20"), (3, "across all endpoints' is 3")):
        with pytest.raises(ResourceLimitExceeded, match=match):
            site.endpoints.update_weights_and_capacities(
                {
                    "EndpointName": "first",
                    "DesiredWeightsAndCapacities": [{"VariantName": "v0", "DesiredInstanceCount": desired}],
                }
            )
