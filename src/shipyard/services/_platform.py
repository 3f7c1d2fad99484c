"""The running platform: every long-lived component the server owns, opened and closed together."""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import fcntl
import hashlib
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

from shipyard.compute import (
    Backend,
    Backends,
    LocalBackend,
    ModelRequest,
    ModelServers,
    discover_gpus,
    machine_resources,
)
from shipyard.compute.local._hosting import LocalModelServers
from shipyard.compute.local._notebooks import JupyterServers
from shipyard.config import Settings
from shipyard.core.arn import sagemaker_arn
from shipyard.core.catalog import InstanceCatalog
from shipyard.core.credentials import SessionCredentials
from shipyard.core.hosting import EndpointState, EndpointStatus
from shipyard.core.placement import Resources
from shipyard.core.pricing import Rates
from shipyard.core.quotas import Load
from shipyard.envs import EnvironmentCache, ImageResolver, PackageSources
from shipyard.errors import ConfigurationError, ShipyardError
from shipyard.runtime.contract import JobApi, StoreAccess
from shipyard.services._experiment_jobs import JobComponents
from shipyard.services._tuning_search import AskWorker
from shipyard.services.autoscaling import AutoscalingService
from shipyard.services.budgets import BudgetService, Commitment
from shipyard.services.costs import CostService
from shipyard.services.credentials import DEFAULT_MARGIN, CredentialService
from shipyard.services.endpoints import EndpointConfigService, EndpointService, ModelService
from shipyard.services.experiments import ExperimentService
from shipyard.services.identity import IdentityService
from shipyard.services.jobs import ProcessingService, TrainingService, TransformService, active_instances
from shipyard.services.lineage import LineageService
from shipyard.services.logs import LogService
from shipyard.services.notebooks import NotebookService
from shipyard.services.pipelines import PipelineService, ServiceSteps
from shipyard.services.quotas import QuotaService
from shipyard.services.registry import ModelRegistry
from shipyard.services.scheduler import AgentSettings, JobScheduler
from shipyard.services.tagging import TaggingService
from shipyard.services.tuning import TuningService
from shipyard.services.waste import WasteService
from shipyard.storage import LocalObjectStore, ObjectStore, UploadSweeper, open_object_store
from shipyard.store import (
    Database,
    JobRepository,
    ProcessingJobRepository,
    ResourceRepository,
    TagRepository,
    TrainingJobRepository,
    TransformJobRepository,
    TuningJobRepository,
    UsageRepository,
)
from shipyard.store.budgets import BudgetRepository
from shipyard.store.credentials import CredentialRepository
from shipyard.store.experiments import ExperimentRepository
from shipyard.store.identity import IdentityRepository
from shipyard.store.notebooks import NotebookRepository
from shipyard.store.pipelines import ModelPackageRepository, PipelineRepository
from shipyard.store.quotas import QuotaRepository
from shipyard.store.utilization import UtilizationRepository

log = logging.getLogger(__name__)


@dataclasses.dataclass
class Platform:
    """Owns the database, the object store and the services built on them.

    Create with :meth:`open`; :meth:`close` releases everything. One platform at a time may use a
    data dir: :meth:`open` takes an exclusive lock on ``<data dir>/server.lock``.
    """

    settings: Settings
    db: Database
    objects: ObjectStore
    catalog: InstanceCatalog
    tagging: TaggingService
    backends: Backends
    training: TrainingService
    processing: ProcessingService
    transform: TransformService
    scheduler: JobScheduler
    logs: LogService
    tuning: TuningService
    models: ModelService
    endpoint_configs: EndpointConfigService
    endpoints: EndpointService
    autoscaling: AutoscalingService
    costs: CostService
    budgets: BudgetService
    waste: WasteService
    utilization: UtilizationRepository
    pipelines: PipelineService
    registry: ModelRegistry
    credentials: CredentialService
    identity: IdentityService
    user_quotas: QuotaService
    experiments: ExperimentService
    lineage: LineageService
    notebooks: NotebookService
    _lock_file: IO[str] | None = None

    @classmethod
    def open(cls, settings: Settings, *, migrate: bool = True) -> Platform:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        # The data dir holds every job's files, the database and its secrets: the server's alone.
        os.chmod(settings.data_dir, 0o700)
        lock_file = _lock_data_dir(settings)
        try:
            db = Database(settings.database_url)
            if migrate:
                db.upgrade()
            _private_database_files(settings)
            objects = open_object_store(settings)
            if isinstance(objects, LocalObjectStore):
                objects.clean_tmp()  # safe: the lock says no other server writes here
            catalog = InstanceCatalog.load(settings.instance_catalog)
            rates = Rates.load(settings.data_dir / "rates.toml")
        except BaseException:
            lock_file.close()
            raise
        usage = UsageRepository(db)
        utilization = UtilizationRepository(db)

        def tags_changed(arn: str) -> None:
            usage.retag(arn, {t.key: t.value for t in tagging.tags_of(arn)})
            tuning.tags_changed(arn)  # a tuning job's next trials carry its tags as they are now

        tagging = TaggingService(TagRepository(db), on_change=tags_changed)
        costs = CostService(
            usage,
            catalog,
            rates,
            tags=lambda arn: {t.key: t.value for t in tagging.tags_of(arn)},
            bucket_sizes=lambda: {b.name: objects.bucket_bytes(b.name) for b in objects.list_buckets()},
            owners=lambda arns: {arn: o.owner for arn, o in identity.ownership(arns).items()},
            # where the scheduler places a launch, so its estimate prices what it will be granted
            capacity=lambda instance_type: _capacity_of(backends.for_type(instance_type)),
            fit_to_machine=settings.fit_to_machine == "on",
            interval=settings.cost_check_seconds,
            storage_sample_seconds=settings.storage_sample_seconds,
        )
        credentials = CredentialService(CredentialRepository(db), account_id=settings.account_id)
        identity = IdentityService(
            IdentityRepository(db, settings.account_id),
            account_id=settings.account_id,
            require_roles=settings.auth == "on",
        )
        tagging.sharing = identity  # the shipyard:group tag shares what it is on
        if settings.auth == "on":
            created = identity.bootstrap(settings.data_dir)
            if created is not None:
                log.warning(
                    "Created the administrator 'admin'; its access key is in %s (readable by this "
                    "user only). Sign requests with it, or make users: shipyard users add <name>",
                    created,
                )
        quotas = QuotaService(  # by user and group: the config file's, and those set at run time
            QuotaRepository(db),
            settings.user_quotas,
            groups_of=lambda name: [g.name for g in identity.repository.groups_of(name)],
            usage=lambda: _quota_usage((jobs, processing_jobs, transform_jobs), endpoints),
        )
        backends = _backends(settings)
        backends.on_billed(  # a cluster's own bill (Slurm's sacct) for the ledger
            lambda bill: costs.cluster_billed(
                CostService.attempt_key(bill.kind, bill.job, bill.attempt),
                started=bill.started,
                ended=bill.ended,
                allocated=bill.allocated,
            )
        )
        sources = package_sources(settings)
        resolver = ImageResolver.load(
            settings.data_dir,
            torch_version=_cpu_torch_version(sources),
            torchvision_version=_cpu_torch_version(sources, "torchvision"),
            gpu_sources=settings.gpu_package_sources.split(),
        )
        jobs = TrainingJobRepository(db)
        processing_jobs = ProcessingJobRepository(db)
        transform_jobs = TransformJobRepository(db)
        scheduler = JobScheduler(
            [jobs, processing_jobs, transform_jobs],
            backends,
            catalog,
            costs,
            utilization,
            AgentSettings(
                jobs_dir=settings.data_dir / "jobs",
                object_store=StoreAccess.from_json(_agent_store_config(settings)),
                # Each attempt gets its own session credentials here (the scheduler's); the
                # server's key never goes into agent.json.
                api=JobApi(endpoint_url=_url_for_nodes(settings)),
                utilization_seconds=settings.utilization_seconds,
                hide=(str(settings.data_dir), str(settings.environments_dir)),
                envs_dir=str(settings.environments_dir),
                sources=dataclasses.asdict(sources),
                allow_server_python=settings.server_python_jobs == "on",
            ),
            credentials=credentials,
            quotas=quotas.bounds,
            fit_to_machine=settings.fit_to_machine == "on",
        )
        scheduler.add_pass(credentials.tick)
        # Before the services it guards; its commitments are read later, when they all exist.
        budgets = BudgetService(
            BudgetRepository(db),
            costs,
            lambda: _commitments(costs, tagging, (training, processing, transform), tuning),
            alert_command=settings.alert_command,
            identity=identity,
        )
        costs.add_pass(budgets.tick)
        common: dict[str, Any] = {  # what every kind of job's service needs
            "catalog": catalog,
            "tagging": tagging,
            "resolver": resolver,
            "account_id": settings.account_id,
            "backend_for": backends.for_type,
            "fit_to_machine": settings.fit_to_machine == "on",
            "wake": scheduler.wake,
            "guard": budgets.guard,
            "quotas": settings.quotas,
            "in_use": lambda: active_instances((jobs, processing_jobs, transform_jobs)),
            "user_quotas": quotas,
            "claims": identity,  # who owns each job
        }
        training = TrainingService(jobs, **common)
        processing = ProcessingService(processing_jobs, **common)
        transform = TransformService(
            transform_jobs,
            model=lambda name: models.get(name)[1].container,
            model_role=lambda name: models.get(name)[0].request.get("ExecutionRoleArn"),
            **common,
        )
        tuning = TuningService(
            TuningJobRepository(db),
            training,
            account_id=settings.account_id,
            guard=budgets.guard,
            quotas=settings.quotas,
            claims=identity,
            # Asks run in a worker process (Optuna, and the Gaussian process's torch, live there),
            # which wakes the scheduler when a trial's suggestion is ready.
            asks=AskWorker(on_ready=scheduler.wake),
            wake=scheduler.wake,
        )
        scheduler.add_pass(tuning.tick)
        models = ModelService(
            ResourceRepository(db, "model", "Model"),
            resolver,
            account_id=settings.account_id,
            claims=identity,
            packages=lambda params: registry.with_package_containers(params),
        )
        configs = EndpointConfigService(
            ResourceRepository(db, "endpoint-config", "Endpoint configuration"),
            models,
            catalog,
            account_id=settings.account_id,
            quotas=settings.quotas,
            claims=identity,
        )
        endpoints = EndpointService(
            ResourceRepository(db, "endpoint", "Endpoint"),
            configs,
            models,
            _model_servers(settings, backends, catalog, objects, sources, credentials),
            resolver,
            costs,
            endpoints_dir=settings.data_dir / "endpoints",
            account_id=settings.account_id,
            startup_timeout=settings.endpoint_startup_seconds,
            serverless_idle_seconds=settings.serverless_idle_seconds,
            guard=budgets.guard,
            tags_of=lambda arn: {t.key: t.value for t in tagging.tags_of(arn)},
            quotas=settings.quotas,
            user_quotas=quotas,
            claims=identity,
            components=ResourceRepository(db, "inference-component", "Inference component"),
            catalog=catalog,
        )
        registry = ModelRegistry(
            ResourceRepository(db, "model-package-group", "Model package group"),
            ModelPackageRepository(db),
            account_id=settings.account_id,
            claims=identity,
        )
        steps = ServiceSteps(
            training=training,
            processing=processing,
            transform=transform,
            tuning=tuning,
            models=models,
            registry=registry,
            tagging=tagging,
            instance_types=[t.name for t in catalog],
            wake=scheduler.wake,
            refusal=identity.launch_refusal,
        )
        pipelines = PipelineService(
            PipelineRepository(db),
            objects,
            account_id=settings.account_id,
            steps=steps,
            claims=identity,
            wake=scheduler.wake,
        )
        scheduler.add_pass(pipelines.tick)
        waste = WasteService(
            endpoints,
            [training, processing, transform],
            costs,
            utilization,
            budgets.repository,
            catalog,
            idle_seconds=settings.idle_endpoint_seconds,
            delete_idle=settings.idle_endpoints == "delete",
        )
        costs.add_pass(waste.tick)
        costs.add_pass(UploadSweeper(objects, settings.multipart_max_age_hours))  # hourly
        experiments = ExperimentService(
            ExperimentRepository(db),
            JobComponents(training, processing, transform),
            account_id=settings.account_id,
            tags_of=tagging.tags_of,
            claims=identity,
        )
        return cls(
            settings,
            db,
            objects,
            catalog,
            tagging,
            backends,
            training,
            processing,
            transform,
            scheduler,
            LogService(jobs, processing_jobs, transform_jobs, settings.data_dir / "endpoints"),
            tuning,
            models,
            configs,
            endpoints,
            AutoscalingService(
                endpoints,
                account_id=settings.account_id,
                interval=settings.autoscaling_interval_seconds,
                window=settings.autoscaling_window_seconds,
            ),
            costs,
            budgets,
            waste,
            utilization,
            pipelines,
            registry,
            credentials,
            identity,
            quotas,
            experiments,
            LineageService(experiments, account_id=settings.account_id, claims=identity),
            NotebookService(
                NotebookRepository(db),
                JupyterServers(settings.sandbox, hide=(settings.data_dir, settings.environments_dir)),
                costs,
                credentials,
                catalog,
                notebooks_dir=settings.data_dir / "notebooks",
                account_id=settings.account_id,
                endpoint_url=_loopback_url(settings),
                idle_seconds=settings.notebook_idle_seconds,
                claims=identity,
            ),
            lock_file,
        )

    def start(self) -> None:
        """Start the background work (the scheduler). The API works without it; jobs wait."""
        self.scheduler.start()
        self.endpoints.start()
        self.autoscaling.start()
        self.costs.start()
        self.notebooks.start()

    def close(self) -> None:
        self.notebooks.close()
        self.scheduler.close()
        self.tuning.close()
        self.autoscaling.close()
        self.costs.close()
        self.endpoints.close()
        self.backends.close()
        self.objects.close()
        self.db.dispose()
        if self._lock_file is not None:
            self._lock_file.close()
            self._lock_file = None


def _capacity_of(backend: Backend) -> tuple[Resources, Resources]:
    """What the scheduler places a job's instances on: the backend's capacity, its largest machine."""
    return backend.capacity, backend.largest_node


def _commitments(
    costs: CostService,
    tagging: TaggingService,
    jobs: tuple[TrainingService, ProcessingService, TransformService],
    tuning: TuningService,
) -> list[Commitment]:
    """The work under way, with what it may still cost: each running or queued job's worst case
    less its cost so far, and each tuning job's trials not yet started at their worst case."""
    from shipyard.core import estimates

    def tags(arn: str) -> dict[str, str]:
        return {t.key: t.value for t in tagging.tags_of(arn)}

    reckon = {
        "training": estimates.training,
        "processing": estimates.processing,
        "transform": estimates.transform,
    }
    found = []
    for service in jobs:
        for job in service.repository.active():
            worst = reckon[job.kind](job.spec.request, costs.launch_price)
            _, spent, _ = costs.resource_cost(job.kind, job.name, since=job.created)
            found.append(
                Commitment(
                    job.kind,
                    job.name,
                    tags(job.arn),
                    estimates.remaining(worst, spent),
                    stop=lambda s=service, n=job.name: s.stop(n),  # type: ignore[misc]
                    owner=job.run.owner,
                )
            )
    for tuning_job in tuning.repository.active():
        request = tuning_job.spec.request
        definitions = request.get("TrainingJobDefinitions") or [request["TrainingJobDefinition"]]
        per_trial = max(estimates.training(d, costs.launch_price).usd for d in definitions)
        left = max(
            0,
            int(request["HyperParameterTuningJobConfig"]["ResourceLimits"]["MaxNumberOfTrainingJobs"])
            - len(tuning_job.trials),
        )
        found.append(
            Commitment(
                "tuning",
                tuning_job.name,
                tags(tuning_job.arn),
                per_trial * left,
                stop=lambda n=tuning_job.name: tuning.stop(n),  # type: ignore[misc]
                owner=tuning_job.owner,
            )
        )
    return found


def _quota_usage(
    jobs: tuple[JobRepository[Any], ...], endpoints: EndpointService
) -> list[tuple[str | None, Load]]:
    """What counts against quotas now: each running job's placed instances, each endpoint's."""
    found = []
    for repository in jobs:
        for job in repository.active():
            if job.run.launched and job.run.placement is not None:
                total = job.run.placement * job.spec.instance_count
                found.append(
                    (
                        job.run.owner,
                        Load(vcpus=total.cpus, gpus=total.gpus, instances=job.spec.instance_count),
                    )
                )
    for endpoint in endpoints.repository.find(limit=100_000):
        if endpoint.status != EndpointStatus.FAILED.value:
            state = EndpointState.from_record(endpoint.status, endpoint.state)
            count = sum(v.instance_count for v in state.variants)
            found.append((endpoint.state.get("owner"), Load(endpoints=count)))
    return found


def package_sources(settings: Settings) -> PackageSources:
    find_links = settings.package_find_links or os.environ.get("PIP_FIND_LINKS", "")
    return PackageSources(
        settings.package_index_url,
        tuple(settings.package_extra_index_urls.split()),
        tuple(find_links.split()),
    )


def _cpu_torch_version(sources: PackageSources, package: str = "torch") -> str | None:
    """The PyTorch (or torchvision) release jobs get: the server's own, else a CPU wheel in the
    site's wheelhouse.

    The local version label is kept (``2.13.0+cpu``): pinned so, only the CPU wheel can satisfy it,
    never an index's multi-GB CUDA build of the same release.
    """
    from importlib import metadata

    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        pass
    for link in sources.find_links:
        folder = Path(link.removeprefix("file://"))
        wheels = sorted(folder.glob(f"{package}-*+cpu-*.whl")) if folder.is_dir() else []
        if wheels:
            return wheels[-1].name.split("-")[1]
    return None


def _backends(settings: Settings) -> Backends:
    """The backends the settings ask for: local, Ray, or local with some instance types on Ray."""
    gpus = discover_gpus(settings.fake_gpus)
    machine = machine_resources(gpus)
    local = LocalBackend(
        dataclasses.replace(machine, cpus=machine.cpus * settings.cpu_overcommit),
        sandbox=settings.sandbox,
        gpus=gpus,
    )
    if settings.backend == "slurm" or settings.slurm_instance_types.strip():
        from shipyard.compute.slurm import SlurmBackend

        slurm = SlurmBackend(
            settings.slurm_site,
            prefix=hashlib.sha1(str(settings.data_dir).encode()).hexdigest()[:8],
            object_store=_agent_store_config(settings, remote=True),
            node_dir=settings.slurm_dir,
            envs_dir=settings.slurm_envs_dir or None,
            sandbox=settings.sandbox,
        )
        if settings.backend == "slurm":  # endpoints and notebooks stay on this machine
            return Backends(local, [("*", slurm)], models_local=True)
        patterns = [p for p in settings.slurm_instance_types.replace(",", " ").split() if p]
        return Backends(local, [(pattern, slurm) for pattern in patterns], models_local=True)
    if settings.backend == "local" and not settings.ray_instance_types.strip():
        return Backends(local)
    from shipyard.compute.ray import RayBackend

    assert settings.ray_address is not None  # checked by Settings
    ray = RayBackend(
        settings.ray_address,
        token=settings.ray_token,
        prefix=hashlib.sha1(str(settings.data_dir).encode()).hexdigest()[:8],
        object_store=_agent_store_config(settings, remote=True),
        sandbox=settings.sandbox,
    )
    if settings.backend == "ray":
        return Backends(ray)
    patterns = [p for p in settings.ray_instance_types.replace(",", " ").split() if p]
    return Backends(local, [(pattern, ray) for pattern in patterns])


def _gpus_of(catalog: InstanceCatalog, instance_type: str) -> tuple[int, float]:
    """An instance type's GPUs and each one's memory (none for a type not in the catalog)."""
    try:
        found = catalog.get(instance_type)
    except ShipyardError:
        return 0, 0.0
    return found.gpu_count, found.gpu_memory_gib


def _model_servers(
    settings: Settings,
    backends: Backends,
    catalog: InstanceCatalog,
    objects: ObjectStore,
    sources: PackageSources,
    credentials: CredentialService,
) -> Callable[[str], ModelServers]:
    """Model servers by instance type: on the backend that type's jobs run on (``backends`` routes
    them, once each backend's model servers are attached here)."""
    local = LocalModelServers(
        objects,
        lambda: EnvironmentCache(
            settings.environments_dir, sources, allow_server_python=settings.server_python_jobs == "on"
        ),
        settings.sandbox,
        hide=(settings.data_dir, settings.environments_dir),
        gpus=next((b.gpus for b in backends if isinstance(b, LocalBackend)), None),
        gpus_for=lambda name: _gpus_of(catalog, name),
    )
    if any(backend.name == "local" for backend in backends):
        backends.serve_models("local", local)
    for backend in backends:
        if backend.name == "ray":
            from shipyard.compute.ray import RayBackend, RayModelServers

            assert isinstance(backend, RayBackend)

            backends.serve_models(
                "ray",
                RayModelServers(
                    backend,
                    catalog,
                    sources,
                    settings.server_python_jobs == "on",
                    settings.endpoint_startup_seconds,
                    credentials=_model_credentials(settings, credentials),
                    revoke=credentials.revoke,
                ),
            )
    return backends.model_servers_for


def _model_credentials(
    settings: Settings, credentials: CredentialService
) -> Callable[[ModelRequest], SessionCredentials]:
    """Credentials for an endpoint instance's host to fetch its model through the server's S3
    API: reading the model's data and code, for as long as starting it may take."""
    lifetime = dt.timedelta(seconds=settings.endpoint_startup_seconds) + DEFAULT_MARGIN

    def issue(request: ModelRequest) -> SessionCredentials:
        owner = sagemaker_arn(settings.region, settings.account_id, "endpoint", request.endpoint)
        container = {
            "model_data_url": request.container.model_data_url,
            "environment": dict(request.container.environment),
        }
        return credentials.for_model(f"{owner}/{request.instance_dir.name}", container, lifetime)

    return issue


def _agent_store_config(settings: Settings, *, remote: bool = False) -> dict[str, Any]:
    """How an instance agent reaches the object store."""
    if settings.object_store == "s3":
        return {
            "kind": "s3",
            "endpoint_url": settings.s3_endpoint_url,
            "access_key_id": settings.s3_access_key_id,
            "secret_access_key": settings.s3_secret_access_key,
            "region": settings.s3_region or settings.region,
        }
    if remote:  # on another machine: through this server's own S3 API, as the job itself
        return {
            "kind": "s3",
            "endpoint_url": _url_for_nodes(settings),
            "job_credentials": True,
            "region": settings.region,
            # The server may be restarting: keep trying for a minute or two before a job fails.
            "max_attempts": 16,
        }
    return {"kind": "local", "root": str(settings.data_dir / "objects")}


def _url_for_nodes(settings: Settings) -> str:
    """This server's address as other machines reach it (bound to all addresses: this machine's
    address on the cluster's network)."""
    if settings.host in ("0.0.0.0", "::", ""):
        import socket

        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("10.255.255.255", 1))  # no packet is sent: this picks the outgoing address
            return f"http://{s.getsockname()[0]}:{settings.port}"
    return settings.url


def _loopback_url(settings: Settings) -> str:
    """This server's address as a process on this machine reaches it (a notebook instance)."""
    if settings.host in ("0.0.0.0", "::", "", "localhost"):
        return f"http://127.0.0.1:{settings.port}"
    return settings.url


def _private_database_files(settings: Settings) -> None:
    """A SQLite database (and its journal files) readable by the server's user only."""
    prefix = "sqlite:///"
    if not settings.database_url.startswith(prefix):
        return
    path = Path(settings.database_url.removeprefix(prefix))
    for name in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        with contextlib.suppress(OSError):
            os.chmod(name, 0o600)


def _lock_data_dir(settings: Settings) -> IO[str]:
    path = settings.data_dir / "server.lock"
    lock_file = path.open("a+")
    try:
        fcntl.flock(lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        lock_file.seek(0)
        holder = lock_file.read().strip() or "unknown"
        lock_file.close()
        raise ConfigurationError(
            f"Another Shipyard server (pid {holder}) is using the data dir {str(settings.data_dir)!r}; "
            "stop it, or give this one another --data-dir"
        ) from None
    lock_file.seek(0)
    lock_file.truncate()
    lock_file.write(str(os.getpid()))
    lock_file.flush()
    with contextlib.suppress(OSError):
        os.chmod(path, 0o600)
    return lock_file
