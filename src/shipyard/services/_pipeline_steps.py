"""The pipeline engine's port onto the platform: how a step creates, follows and stops its work.

:class:`PipelineSteps` is what the engine needs; :class:`ServiceSteps` implements it over the
training, processing, transform, tuning, model and registry services, with each request built
from a step's arguments converted and validated against botocore's model as a client's request
is, and each Describe answer shaped as the API shapes it — so a pipeline's jobs are ordinary jobs
(budgets — asked by the services' creates —, tags, costs, logs) and a step's properties are its job's Describe answer.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable, Collection, Mapping
from typing import TYPE_CHECKING, Any, Protocol

from shipyard.core.pipelines import STEP_KINDS
from shipyard.core.tags import Tag
from shipyard.errors import AccessDenied, ConflictError, NotFoundError
from shipyard.schema import ServiceSchema, sagemaker_enum_widening
from shipyard.services import describe as answers

if TYPE_CHECKING:
    from shipyard.services.endpoints import ModelService
    from shipyard.services.jobs import ProcessingService, TrainingService, TransformService
    from shipyard.services.registry import ModelRegistry
    from shipyard.services.tagging import TaggingService
    from shipyard.services.tuning import TuningService


class PipelineSteps(Protocol):
    """What the pipeline engine does to the platform, by step type (Processing, Training, Tuning,
    Transform, Model/CreateModel, RegisterModel). Errors are the platform's own: ValidationError
    for a request that cannot run, LimitExceededError for a limit or budget, ConflictError for a
    name already taken, NotFoundError for a job that is gone."""

    def create(self, step_type: str, request: Mapping[str, Any], *, owner: str | None, region: str) -> str:
        """Create the step's job (or model, or model package) from its resolved arguments (named
        already when the type has a name member); its ARN."""
        ...

    def describe(self, step_type: str, name: str) -> dict[str, Any]:
        """The Describe answer of the step's work, as a client reads it (JSON values); a Tuning
        step's adds ``TrainingJobSummaries``, best first."""
        ...

    def stop(self, step_type: str, name: str) -> None: ...

    def property_problem(self, step_type: str, path: list[str | int]) -> str | None:
        """Why ``path`` is not a property of a step of that type (None when it is)."""
        ...


class Refusal(Protocol):
    """Why the user ``owner`` may not have a step's work made for it (IdentityService.launch_refusal)."""

    def __call__(
        self,
        owner: str | None,
        kind: str,
        params: Mapping[str, Any],
        *,
        action: str,
        model: Mapping[str, Any] | None = None,
        uses: Collection[str] = (),
    ) -> AccessDenied | None: ...


# The job kind of each step type whose work reads and writes S3 (core/credentials.s3_grants).
_JOB_KINDS = {
    "Training": "training",
    "Processing": "processing",
    "Transform": "transform",
    "Tuning": "tuning",
}


class ServiceSteps:
    """:class:`PipelineSteps` over the platform's services. With ``refusal``, a step's work is
    made only when the execution's owner could make it through the API: a pipeline's steps
    (their arguments resolved from parameters and other steps at run time) reach no other
    user's data, models or package groups (AccessDenied fails the step)."""

    def __init__(
        self,
        *,
        training: TrainingService,
        processing: ProcessingService,
        transform: TransformService,
        tuning: TuningService,
        models: ModelService,
        registry: ModelRegistry,
        tagging: TaggingService,
        instance_types: Collection[str],
        wake: Callable[[], None],
        schema: ServiceSchema | None = None,
        refusal: Refusal | None = None,
    ) -> None:
        self._training = training
        self._processing = processing
        self._transform = transform
        self._tuning = tuning
        self._models = models
        self._registry = registry
        self._tagging = tagging
        self._instance_types = instance_types
        self._wake = wake
        self._schema = schema or ServiceSchema.load("sagemaker")
        self._refusal = refusal

    def _checked(self, operation: str, request: Mapping[str, Any]) -> dict[str, Any]:
        typed = self._schema.coerce_input(operation, request)
        widening = sagemaker_enum_widening(self._instance_types)
        return self._schema.validate_input(operation, typed, extra_enum_values=widening)

    def _shaped(self, operation: str, answer: Mapping[str, Any]) -> dict[str, Any]:
        result: dict[str, Any] = json.loads(json.dumps(self._schema.shape_output(operation, answer)))
        return result

    def _tag(self, arn: str, params: Mapping[str, Any]) -> None:
        if params.get("Tags"):
            self._tagging.add_tags(arn, [Tag.from_wire(t) for t in params["Tags"]])

    def create(self, step_type: str, request: Mapping[str, Any], *, owner: str | None, region: str) -> str:
        kind = STEP_KINDS[step_type]
        params = self._checked(kind.create, request)
        self._check_access(step_type, kind.create, params, owner=owner)
        if step_type == "RegisterModel" and request.get("ModelPackageGroupName"):
            self._ensure_group(str(request["ModelPackageGroupName"]), region=region, owner=owner)
        if step_type == "Training":
            return self._training.create(params, region=region, owner=owner).arn
        if step_type == "Processing":
            return self._processing.create(params, region=region, owner=owner).arn
        if step_type == "Transform":
            return self._transform.create(params, region=region, owner=owner).arn
        if step_type == "Tuning":
            arn = self._tuning.create(params, region=region, owner=owner).arn
            self._wake()
            return arn
        if step_type in ("Model", "CreateModel"):
            model = self._models.create(params, region=region, owner=owner)
            self._tag(model.arn, params)
            return model.arn
        package = self._registry.create_package(params, region=region, owner=owner)
        self._tag(package.arn, params)
        return package.arn

    def _check_access(
        self, step_type: str, operation: str, params: Mapping[str, Any], *, owner: str | None
    ) -> None:
        if self._refusal is None or owner is None:
            return
        model: Mapping[str, Any] | None = None
        uses: list[str] = []
        if step_type == "Transform" and isinstance(params.get("ModelName"), str):
            try:
                record, spec = self._models.get(params["ModelName"])
            except NotFoundError:  # the create says so
                pass
            else:
                uses.append(record.arn)
                container = spec.container
                model = {
                    "model_data_url": container.model_data_url,
                    "environment": dict(container.environment),
                }
        group = params.get("ModelPackageGroupName")
        if step_type == "RegisterModel" and isinstance(group, str):
            with contextlib.suppress(NotFoundError):
                uses.append(self._registry.group(group).arn)
        refused = self._refusal(
            owner,
            _JOB_KINDS.get(step_type, ""),
            params,
            action=f"sagemaker:{operation}",
            model=model,
            uses=uses,
        )
        if refused is not None:
            raise refused

    def _ensure_group(self, name: str, *, region: str, owner: str | None) -> None:
        """A RegisterModel step registers into its group, creating the group when it is missing
        (the execution's owner's, then)."""
        with contextlib.suppress(ConflictError):  # it exists (or was just made)
            self._registry.create_group(
                self._checked("CreateModelPackageGroup", {"ModelPackageGroupName": name}),
                region=region,
                owner=owner,
            )

    def describe(self, step_type: str, name: str) -> dict[str, Any]:
        operation = STEP_KINDS[step_type].describe
        if step_type == "Training":
            return self._shaped(operation, answers.training_job(self._training.describe(name)))
        if step_type == "Processing":
            return self._shaped(operation, answers.processing_job(self._processing.describe(name)))
        if step_type == "Transform":
            return self._shaped(operation, answers.transform_job(self._transform.describe(name)))
        if step_type in ("Model", "CreateModel"):
            return self._shaped(operation, answers.model(self._models.get(name)[0]))
        if step_type == "RegisterModel":
            return self._shaped(operation, answers.model_package(self._registry.package(name)))
        job, views = self._tuning.describe(name)
        properties = self._shaped(operation, answers.tuning_job(job, views, self._tuning.best(job, views)))
        listed = self._shaped(
            "ListTrainingJobsForHyperParameterTuningJob",
            {"TrainingJobSummaries": [answers.trial_summary(job, v) for v in views]},
        )
        properties["TrainingJobSummaries"] = _best_first(listed["TrainingJobSummaries"], job.spec.maximize)
        return properties

    def stop(self, step_type: str, name: str) -> None:
        if step_type == "Training":
            self._training.stop(name)
        elif step_type == "Processing":
            self._processing.stop(name)
        elif step_type == "Transform":
            self._transform.stop(name)
        elif step_type == "Tuning":
            self._tuning.stop(name)
            self._wake()

    def property_problem(self, step_type: str, path: list[str | int]) -> str | None:
        if step_type == "Tuning" and path and path[0] == "TrainingJobSummaries":
            return self._schema.member_path_problem(
                "ListTrainingJobsForHyperParameterTuningJob", "TrainingJobSummaries", path[1:]
            )
        return self._schema.output_path_problem(STEP_KINDS[step_type].describe, path)


def _best_first(summaries: list[dict[str, Any]], maximize: bool) -> list[dict[str, Any]]:
    """A tuning job's trials, best first; among equals the earliest, as BestTrainingJob picks:
    what ``TrainingJobSummaries[0]`` of a Tuning step means."""

    def key(summary: Mapping[str, Any]) -> tuple[int, float, float, str]:
        value = (summary.get("FinalHyperParameterTuningJobObjectiveMetric") or {}).get("Value")
        order = (float(summary.get("CreationTime") or 0), str(summary.get("TrainingJobName")))
        if value is None:
            return (1, 0.0, *order)
        return (0, -value if maximize else value, *order)

    return sorted(summaries, key=key)
