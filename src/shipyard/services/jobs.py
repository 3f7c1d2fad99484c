"""Jobs the scheduler runs (training, processing and batch transform): create, describe, list and stop."""

from __future__ import annotations

import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any, Generic

from shipyard.compute import Backend, Feature
from shipyard.core import estimates
from shipyard.core.arn import sagemaker_arn
from shipyard.core.catalog import InstanceCatalog, JobKind
from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.hosting import ContainerSpec
from shipyard.core.jobs import Job, JobRun, JobState, SpecT, TrainingJob
from shipyard.core.pagination import Page
from shipyard.core.placement import parallel_note, plan
from shipyard.core.processing import ProcessingJobSpec
from shipyard.core.quotas import Quotas
from shipyard.core.tags import Tag
from shipyard.core.training import MetricPoint, TrainingJobSpec, parse_s3_uri
from shipyard.core.transform import TransformJobSpec
from shipyard.envs import ImageResolver, framework_of
from shipyard.errors import NotFoundError, ValidationError
from shipyard.services._claims import NO_CLAIMS, Claims
from shipyard.services._guard import LaunchGuard, Reckon, no_guard, request_tags
from shipyard.services.quotas import QuotaService
from shipyard.services.tagging import TaggingService
from shipyard.store import JobRepository, TrainingJobQuery, TrainingJobRepository


def _builtin_xgboost(params: Mapping[str, Any]) -> TrainingJobSpec:
    """The spec of a built-in XGBoost job: hyperparameters checked, the algorithm's metrics defined."""
    from shipyard.core.algorithms import xgboost

    xgboost.validate_hyperparameters(params.get("HyperParameters") or {})
    algorithm = dict(params["AlgorithmSpecification"])
    if not algorithm.get("MetricDefinitions"):
        algorithm["MetricDefinitions"] = xgboost.metric_definitions()
    return TrainingJobSpec.from_request({**params, "AlgorithmSpecification": algorithm})


def active_instances(repositories: Sequence[JobRepository[Any]]) -> int:
    """The instances of every active job in ``repositories`` (what the concurrent quota counts)."""
    return sum(job.spec.instance_count for repository in repositories for job in repository.active())


class JobService(Generic[SpecT]):
    """What every kind of job the scheduler runs offers: create (in the subclass), describe, list
    and stop. ``wake`` nudges the scheduler after a change. ``quotas`` are checked at create, with
    ``in_use`` counting the instances of active jobs (of every kind; this kind's by default).
    ``claims`` records who owns each job created (its ``owner``)."""

    label = "job"  # as messages name the kind
    name_field = "JobName"  # the request field that names a job

    def __init__(
        self,
        repository: JobRepository[SpecT],
        catalog: InstanceCatalog,
        tagging: TaggingService,
        resolver: ImageResolver,
        *,
        account_id: str,
        backend_for: Callable[[str], Backend],
        fit_to_machine: bool,
        wake: Callable[[], None],
        clock: Clock = SYSTEM_CLOCK,
        guard: LaunchGuard = no_guard,
        quotas: Quotas = Quotas(),
        in_use: Callable[[], int] | None = None,
        claims: Claims = NO_CLAIMS,
        user_quotas: QuotaService | None = None,
    ) -> None:
        self.repository = repository
        self._user_quotas = user_quotas  # a job larger than a quota of its owner's is refused
        self._claims = claims
        self._quotas = quotas
        self._in_use = in_use or (lambda: active_instances([repository]))
        self._clock = clock
        self._guard = guard  # the budgets, asked once per job created
        self._catalog = catalog
        self._tagging = tagging
        self._resolver = resolver
        self._account_id = account_id
        self._backend_for = backend_for
        self._fit_to_machine = fit_to_machine
        self._wake = wake

    def _launch(
        self, reckon: Reckon, params: Mapping[str, Any], *, owner: str | None, skip: bool = False
    ) -> contextlib.AbstractContextManager[None]:
        """Around a create by ``owner``: the budgets refuse it or let it run under their launch lock."""
        if skip:
            return contextlib.nullcontext()
        name = str(params.get(self.name_field, ""))
        return self._guard(self.label, name, reckon, params, request_tags(params), owner=owner)

    def _new_job(
        self,
        spec: SpecT,
        params: Mapping[str, Any],
        *,
        region: str,
        image_field: str,
        run: JobRun | None = None,
        owner: str | None = None,
        trial: bool = False,
    ) -> Job[SpecT]:
        """Record a new job (quotas and placement checked, environment resolved, tags added) and
        wake the scheduler. A tuning job's ``trial`` is not refused for the instances in use."""
        # First: a request past the quotas is refused before anything else looks at its count.
        self._quotas.check_job(spec.kind, spec.instance_count, in_use=None if trial else self._in_use())
        instance_type = self._catalog.get(spec.instance_type)
        instance_type.price_per_hour(JobKind(spec.kind))  # offered for this kind of job at all?
        if not spec.image:
            raise ValidationError(f"{image_field} is required", field=image_field)
        backend = self._backend_for(spec.instance_type)
        missing = backend.unsupported.get(Feature.GPU)
        if instance_type.gpu_count and missing and not self._fit_to_machine:
            raise ValidationError(
                f"{spec.instance_type} has {instance_type.gpu_count} GPU(s), which the {backend.name!r} backend "
                f"cannot give: {missing}",
                field="InstanceType",
                value=spec.instance_type,
            )
        placement = plan(
            instance_type,
            spec.instance_count,
            backend.capacity,
            node=backend.largest_node,
            gpu_memory_gib=backend.largest_gpu_memory_gib,
            fit_to_machine=self._fit_to_machine,
        )
        environment = self._resolver.resolve(  # for the GPUs each instance gets: PyTorch's build
            spec.image,
            field=image_field,
            arguments=getattr(spec, "arguments", ()),
            gpus=placement.per_instance.gpus,
            instance_type=spec.instance_type,
        )
        if self._user_quotas is not None:
            self._user_quotas.check_job(owner, placement.total, placement.count)
        now = self._clock.now()
        state = JobState.new(now)
        if placement.scaled_down:
            state = dataclasses.replace(state, scaled_down=placement.scaled_down)
        tags = [Tag.from_wire(t) for t in params.get("Tags", [])]
        self._tagging.check(tags)  # a share tag's group, before the job exists
        job: Job[SpecT] = Job(
            spec,
            sagemaker_arn(region, self._account_id, f"{spec.kind}-job", spec.name),
            now,
            state,
            (run or JobRun()).replace(region=region, environment=environment.to_json(), owner=owner),
        )
        self.repository.create(job)
        self._claims.claim_for(job.arn, owner)  # before its tags: a share tag needs the record
        if tags:
            self._tagging.add_tags(job.arn, tags)
        self._wake()
        return job

    def check_owner_quota(self, owner: str | None, instance_type: str, count: int) -> None:
        """Refuse work of ``count`` x ``instance_type`` (as it would be placed) larger than one
        of ``owner``'s quotas on its own (a tuning job's trials, before the tuning job exists).

        Raises:
            QuotaExceeded: naming the quota.
        """
        if self._user_quotas is None or not self._user_quotas.bounds(owner):
            return
        backend = self._backend_for(instance_type)
        placement = plan(
            self._catalog.get(instance_type),
            count,
            backend.capacity,
            node=backend.largest_node,
            gpu_memory_gib=backend.largest_gpu_memory_gib,
            fit_to_machine=self._fit_to_machine,
        )
        self._user_quotas.check_job(owner, placement.total, placement.count)

    def parallel_note(self, instance_type: str, count: int, parallel: int) -> str | None:
        """Why fewer than ``parallel`` jobs of ``count`` x ``instance_type`` (as they would be
        placed) run at once on their backend, or None when that many fit."""
        backend = self._backend_for(instance_type)
        placement = plan(
            self._catalog.get(instance_type),
            count,
            backend.capacity,
            node=backend.largest_node,
            gpu_memory_gib=backend.largest_gpu_memory_gib,
            fit_to_machine=self._fit_to_machine,
        )
        return parallel_note(placement, instance_type, parallel, backend.capacity)

    def describe(self, name: str) -> Job[SpecT]:
        return self.repository.get(name)

    def describe_many(self, names: Iterable[str]) -> dict[str, Job[SpecT]]:
        """The named jobs that exist, by name."""
        return self.repository.get_many(names)

    def list_jobs(
        self, query: TrainingJobQuery, *, max_results: int = 10, next_token: str | None = None
    ) -> tuple[list[Job[SpecT]], str | None]:
        page = Page.at(next_token, max_results)
        return page.cut(self.repository.find(query, offset=page.offset, limit=page.limit))

    def stop(self, name: str) -> Job[SpecT]:
        def change(job: Job[SpecT]) -> Job[SpecT]:
            if job.state.status.is_terminal:
                raise ValidationError(
                    f"The {self.label} {name!r} is in status {job.state.status.value} and cannot be stopped",
                    field=self.name_field,
                    value=name,
                )
            return job.with_state(job.state.stopping(self._clock.now()))

        job = self.repository.modify(name, change)
        self._wake()
        return job


class TrainingService(JobService[TrainingJobSpec]):
    label = "training job"
    name_field = "TrainingJobName"
    repository: TrainingJobRepository

    def create(
        self,
        params: Mapping[str, Any],
        *,
        region: str,
        tuning_job: tuple[str, str] | None = None,
        owner: str | None = None,
    ) -> TrainingJob:
        """Create a training job; ``tuning_job`` (name, ARN) when it is a tuning job's trial (the
        budgets were asked for its tuning job, not for each trial)."""
        with self._launch(estimates.training, params, owner=owner, skip=tuning_job is not None):
            return self._create(params, region=region, tuning_job=tuning_job, owner=owner)

    def _create(
        self, params: Mapping[str, Any], *, region: str, tuning_job: tuple[str, str] | None, owner: str | None
    ) -> TrainingJob:
        spec = TrainingJobSpec.from_request(params)
        parse_s3_uri(spec.output_path, field="OutputDataConfig.S3OutputPath")
        for channel in spec.channels:
            parse_s3_uri(channel.s3_uri, field=f"InputDataConfig[{channel.name}].S3Uri")
        if spec.checkpoint_s3_uri:
            parse_s3_uri(spec.checkpoint_s3_uri, field="CheckpointConfig.S3Uri")
        image_field = "AlgorithmSpecification.TrainingImage"
        if spec.image and not spec.program and not spec.entrypoint:
            if self._resolver.resolve(spec.image, field=image_field).builtin != "xgboost":
                raise ValidationError(
                    f"No training script given and image {spec.image!r} has no built-in algorithm: give a script (the sagemaker_program and "
                    "sagemaker_submit_directory hyperparameters, which the SDK's entry_point/source_dir set) "
                    "or AlgorithmSpecification.ContainerEntrypoint",
                    field=image_field,
                    value=spec.image,
                )
            spec = _builtin_xgboost(params)
        run = JobRun(tuning_job=tuning_job[0], tuning_job_arn=tuning_job[1]) if tuning_job else None
        return self._new_job(
            spec, params, region=region, image_field=image_field, run=run, owner=owner, trial=run is not None
        )

    def tags_of(self, arn: str) -> list[Tag]:
        return self._tagging.tags_of(arn)

    def add_tags(self, arn: str, tags: list[Tag]) -> None:
        self._tagging.add_tags(arn, tags)

    def metric_series(self, name: str) -> dict[str, list[MetricPoint]]:
        self.repository.get(name)
        return self.repository.metric_series(name)


class ProcessingService(JobService[ProcessingJobSpec]):
    label = "processing job"
    name_field = "ProcessingJobName"

    def create(
        self, params: Mapping[str, Any], *, region: str, owner: str | None = None
    ) -> Job[ProcessingJobSpec]:
        with self._launch(estimates.processing, params, owner=owner):
            return self._create(params, region=region, owner=owner)

    def _create(self, params: Mapping[str, Any], *, region: str, owner: str | None) -> Job[ProcessingJobSpec]:
        spec = ProcessingJobSpec.from_request(params)
        return self._new_job(
            spec, params, region=region, image_field="AppSpecification.ImageUri", owner=owner
        )


class TransformService(JobService[TransformJobSpec]):
    """Batch transform jobs. ``model`` gives a model's container by name (the model service's);
    ``model_role`` its ExecutionRoleArn, which the job acts as."""

    label = "transform job"
    name_field = "TransformJobName"

    def __init__(
        self,
        *args: Any,
        model: Callable[[str], ContainerSpec],
        model_role: Callable[[str], str | None] = lambda name: None,
        **kwargs: Any,
    ) -> None:
        super().__init__(*args, **kwargs)
        self._model = model
        self._model_role = model_role

    def create(
        self, params: Mapping[str, Any], *, region: str, owner: str | None = None
    ) -> Job[TransformJobSpec]:
        with self._launch(estimates.transform, params, owner=owner):
            return self._create(params, region=region, owner=owner)

    def _create(self, params: Mapping[str, Any], *, region: str, owner: str | None) -> Job[TransformJobSpec]:
        spec = TransformJobSpec.from_request(params)
        try:
            container = self._model(spec.model_name)
        except NotFoundError:
            raise ValidationError(
                f"Could not find model {spec.model_name!r}", field="ModelName", value=spec.model_name
            ) from None
        spec = dataclasses.replace(spec, image=container.image)
        model = {  # as it is now: the job keeps it should the model change or go
            "image": container.image,
            "model_data_url": container.model_data_url,
            "environment": dict(container.environment),
            "framework": framework_of(container.image) or "sklearn",
            "role_arn": self._model_role(spec.model_name),
        }
        return self._new_job(
            spec, params, region=region, image_field="ModelName", run=JobRun(model=model), owner=owner
        )
