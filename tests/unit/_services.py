"""The services of the job path wired on fakes: a FakeBackend, a ManualClock and a temporary
SQLite store (migrated once per session, copied per test). No server, no process."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.compute import Backends
from shipyard.core.catalog import InstanceCatalog
from shipyard.core.placement import Resources
from shipyard.core.pricing import Rates
from shipyard.envs import ImageResolver
from shipyard.runtime.contract import JobApi, StoreAccess
from shipyard.services.costs import CostService
from shipyard.services.credentials import CredentialService
from shipyard.services.identity import IdentityService
from shipyard.services.jobs import TrainingService
from shipyard.services.quotas import QuotaService
from shipyard.services.scheduler import AgentSettings, JobScheduler
from shipyard.services.tagging import TaggingService
from shipyard.services.tuning import TuningService
from shipyard.store import (
    Database,
    ProcessingJobRepository,
    TagRepository,
    TrainingJobRepository,
    TransformJobRepository,
    TuningJobRepository,
    UsageRepository,
)
from shipyard.store.credentials import CredentialRepository
from shipyard.store.identity import IdentityRepository
from shipyard.store.quotas import QuotaRepository
from shipyard.store.utilization import UtilizationRepository
from shipyard.testing import FakeBackend, ManualClock

SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


@dataclasses.dataclass
class World:
    clock: ManualClock
    backend: FakeBackend
    scheduler: JobScheduler
    training: TrainingService
    utilization: UtilizationRepository
    jobs_dir: Path
    tuning: TuningService
    credentials: CredentialService
    identity: IdentityService
    quotas: QuotaService  # by user and group (none until a test sets some)

    def create(self, name: str, *, owner: str | None = None, **kw: Any) -> None:
        """A training job ``name`` (``owner``: a user's name; None: root's)."""
        arn = f"arn:aws:iam::000000000000:user/{owner}" if owner else None
        self.training.create(params(name, **kw), region="eu-west-1", owner=arn)

    def job(self, name: str) -> Any:
        return self.training.describe(name)

    def tick(self) -> None:
        """One pass of the scheduler, then of tuning (as the server's loop runs them)."""
        self.scheduler.tick()
        self.tuning.tick()


def params(
    name: str,
    *,
    count: int = 1,
    instance_type: str = "ml.m5.large",
    retries: int = 0,
    metrics: tuple[tuple[str, str], ...] = (),
) -> dict[str, Any]:
    request: dict[str, Any] = {
        "TrainingJobName": name,
        "AlgorithmSpecification": {
            "TrainingImage": SKLEARN,
            "TrainingInputMode": "File",
            "MetricDefinitions": [{"Name": n, "Regex": r} for n, r in metrics],
        },
        "HyperParameters": {
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": '"s3://b/code.tar.gz"',
        },
        "RoleArn": "arn:aws:iam::000000000000:role/r",
        "OutputDataConfig": {"S3OutputPath": "s3://b/out"},
        "ResourceConfig": {"InstanceType": instance_type, "InstanceCount": count, "VolumeSizeInGB": 10},
        "StoppingCondition": {"MaxRuntimeInSeconds": 3600},
    }
    if retries:
        request["RetryStrategy"] = {"MaximumRetryAttempts": retries}
    return request


@pytest.fixture(scope="session")
def template_db(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("db") / "template.db"
    db = Database(f"sqlite:///{path}")
    db.upgrade()  # migrated once; each test copies it
    db.engine.dispose()  # the WAL checkpointed into the file
    return path


@pytest.fixture
def world(tmp_path: Path, template_db: Path) -> Iterator[World]:
    db_path = tmp_path / "shipyard.db"
    db_path.write_bytes(template_db.read_bytes())
    db = Database(f"sqlite:///{db_path}")
    clock = ManualClock()
    catalog = InstanceCatalog.load()
    backend = FakeBackend(Resources(4, 16, 0), clock=clock)
    backends = Backends(backend)
    costs = CostService(UsageRepository(db), catalog, Rates(), tags=lambda arn: {}, bucket_sizes=lambda: {})
    utilization = UtilizationRepository(db)
    credentials = CredentialService(CredentialRepository(db), account_id="000000000000", clock=clock)
    identity = IdentityService(IdentityRepository(db, "000000000000"), account_id="000000000000", clock=clock)
    quotas = QuotaService(
        QuotaRepository(db),
        groups_of=lambda name: [g.name for g in identity.repository.groups_of(name)],
        clock=clock,
        cache_seconds=0,
    )
    repositories = [TrainingJobRepository(db), ProcessingJobRepository(db), TransformJobRepository(db)]
    scheduler = JobScheduler(
        repositories,
        backends,
        catalog,
        costs,
        utilization,
        AgentSettings(
            jobs_dir=tmp_path / "jobs",
            object_store=StoreAccess("local", root=str(tmp_path / "objects")),
            api=JobApi("http://127.0.0.1:8300"),
        ),
        fit_to_machine=False,
        clock=clock,
        credentials=credentials,
        quotas=quotas.bounds,
    )
    training = TrainingService(
        repositories[0],
        catalog,
        TaggingService(TagRepository(db)),
        ImageResolver.load(tmp_path),
        account_id="000000000000",
        backend_for=backends.for_type,
        fit_to_machine=False,
        wake=scheduler.wake,
        clock=clock,
        user_quotas=quotas,
    )
    tuning = TuningService(TuningJobRepository(db), training, account_id="000000000000", clock=clock)
    yield World(
        clock,
        backend,
        scheduler,
        training,
        utilization,
        tmp_path / "jobs",
        tuning,
        credentials,
        identity,
        quotas,
    )
    db.engine.dispose()
