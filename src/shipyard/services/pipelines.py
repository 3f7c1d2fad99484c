"""Pipelines: SageMaker pipeline definitions run as DAGs, one pass at a time from the store.

:class:`PipelineService` keeps pipelines and their executions (create, start, stop, retry); its
:meth:`~PipelineService.tick` (in the scheduler's loop) is the engine's pass
(:class:`~shipyard.services._pipeline_engine.PipelineEngine`), which starts and follows steps
through the :class:`~shipyard.services._pipeline_steps.PipelineSteps` port: the platform's own
services, so a pipeline's jobs are ordinary jobs (budgets, tags, costs, logs) and a step's
properties are its job's Describe answer.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any

from shipyard.core.arn import sagemaker_arn
from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.pagination import Page
from shipyard.core.pipelines import (
    STEP_KINDS,
    Definition,
    DefinitionError,
    Execution,
    ExecutionStatus,
    Pipeline,
    ResolutionError,
    StepStatus,
    parse_path,
    references,
)
from shipyard.core.training import parse_s3_uri
from shipyard.errors import NotFoundError, ValidationError
from shipyard.services._claims import NO_CLAIMS, Claims
from shipyard.services._pipeline_engine import PipelineEngine
from shipyard.services._pipeline_steps import PipelineSteps, ServiceSteps
from shipyard.storage import ObjectStore
from shipyard.store.pipelines import PipelineRepository

log = logging.getLogger(__name__)

_MAX_JSON_BYTES = 1 << 20  # a property file or a function step's result read for an expression


class PipelineService:
    """Args:
    repository: Where pipelines and executions are.
    objects: Where definitions given by S3 location, property files and JSON results are read.
    steps: The port through which steps do their work (None: executions start but do not run).
    clock: The time of creations, changes and steps.
    claims: Who owns each pipeline and execution (its steps' work: the execution's owner).
    """

    def __init__(
        self,
        repository: PipelineRepository,
        objects: ObjectStore,
        *,
        account_id: str,
        steps: PipelineSteps | None = None,
        clock: Clock = SYSTEM_CLOCK,
        claims: Claims = NO_CLAIMS,
        wake: Callable[[], None] = lambda: None,
    ) -> None:
        self.repository = repository
        self._wake = wake  # the scheduler, whose passes run this service's tick
        self._claims = claims
        self._objects = objects
        self._account_id = account_id
        self._clock = clock
        self.steps = steps
        self.engine = PipelineEngine(repository, steps, self.read_json, clock=clock) if steps else None
        self._definitions: dict[str, Definition] = {}  # without an engine: parsed definitions

    # -- pipelines ------------------------------------------------------------------------------
    def create(self, params: Mapping[str, Any], *, region: str, owner: str | None = None) -> Pipeline:
        name = params["PipelineName"]
        definition = self.definition_text(params)
        _check_json(definition)
        now = self._clock.now()
        pipeline = Pipeline(
            name=name,
            arn=sagemaker_arn(region, self._account_id, "pipeline", name),
            created=now,
            last_modified=now,
            definition=definition,
            display_name=params.get("PipelineDisplayName"),
            description=params.get("PipelineDescription"),
            role_arn=params.get("RoleArn"),
            parallelism=(params.get("ParallelismConfiguration") or {}).get("MaxParallelExecutionSteps"),
        )
        created = self.repository.create(pipeline)
        self._claims.claim_for(created.arn, owner)
        return created

    def update(self, params: Mapping[str, Any]) -> Pipeline:
        changes: dict[str, Any] = {}
        if params.get("PipelineDefinition") is not None or params.get("PipelineDefinitionS3Location"):
            changes["definition"] = self.definition_text(params)
            _check_json(changes["definition"])
        for member, attribute in (
            ("PipelineDisplayName", "display_name"),
            ("PipelineDescription", "description"),
            ("RoleArn", "role_arn"),
        ):
            if params.get(member) is not None:
                changes[attribute] = params[member]
        if params.get("ParallelismConfiguration"):
            changes["parallelism"] = params["ParallelismConfiguration"]["MaxParallelExecutionSteps"]

        def change(pipeline: Pipeline) -> Pipeline:
            return dataclasses.replace(
                pipeline, **changes, version=pipeline.version + 1, last_modified=self._clock.now()
            )

        return self.repository.modify(self.pipeline_name(params["PipelineName"]), change)

    def get(self, name_or_arn: str) -> Pipeline:
        return self.repository.get(self.pipeline_name(name_or_arn))

    def delete(self, name: str) -> Pipeline:
        pipeline = self.repository.delete(self.pipeline_name(name))
        self._claims.forget(pipeline.arn)
        return pipeline

    def find(self, params: Mapping[str, Any]) -> tuple[list[Pipeline], str | None]:
        page = Page.requested(params, default_size=50)
        found = self.repository.find(
            prefix=params.get("PipelineNamePrefix"),
            created_after=params.get("CreatedAfter"),
            created_before=params.get("CreatedBefore"),
            sort_by=params.get("SortBy", "CreationTime"),
            ascending=params.get("SortOrder") == "Ascending",
            offset=page.offset,
            limit=page.limit,
        )
        return page.cut(found)

    @staticmethod
    def pipeline_name(name_or_arn: str) -> str:
        return name_or_arn.split(":pipeline/", 1)[1] if ":pipeline/" in name_or_arn else name_or_arn

    def definition_text(self, params: Mapping[str, Any]) -> str:
        """A Create/UpdatePipeline request's definition: ``PipelineDefinition``, or the object
        ``PipelineDefinitionS3Location`` names, read."""
        if params.get("PipelineDefinition") is not None:
            return str(params["PipelineDefinition"])
        location = params.get("PipelineDefinitionS3Location")
        if not location:
            raise ValidationError(
                "Give the pipeline's definition: PipelineDefinition or PipelineDefinitionS3Location",
                field="PipelineDefinition",
            )
        return self._read_text(
            location["Bucket"], location["ObjectKey"], field="PipelineDefinitionS3Location"
        )

    def _read_text(self, bucket: str, key: str, *, field: str, limit: int = 10 << 20) -> str:
        try:
            _, _, chunks = self._objects.read_object(bucket, key)
        except NotFoundError as exc:
            raise ValidationError(
                f"{field}: s3://{bucket}/{key} cannot be read: {exc}", field=field
            ) from None
        data = b""
        for chunk in chunks:
            data += chunk
            if len(data) > limit:
                raise ValidationError(
                    f"{field}: s3://{bucket}/{key} is larger than {limit} bytes", field=field
                )
        return data.decode("utf-8", errors="replace")

    # -- executions -----------------------------------------------------------------------------
    def start(self, params: Mapping[str, Any], *, region: str, owner: str | None) -> Execution:
        pipeline = self.get(params["PipelineName"])
        for member in ("SelectiveExecutionConfig", "PipelineVersionAlias", "MlflowExperimentName"):
            if params.get(member):
                raise ValidationError(
                    f"{member} is not supported by Shipyard yet; start the whole pipeline instead",
                    field=member,
                    value=params[member],
                )
        version = params.get("PipelineVersionId")
        if version is not None and version != pipeline.version:
            raise ValidationError(
                f"Pipeline {pipeline.name!r} is at version {pipeline.version}; Shipyard keeps only the "
                f"current definition, so version {version} cannot be started",
                field="PipelineVersionId",
                value=version,
            )
        given = {p["Name"]: p["Value"] for p in params.get("PipelineParameters") or []}
        now = self._clock.now()
        execution_id = "".join(secrets.choice("abcdefghijklmnopqrstuvwxyz0123456789") for _ in range(12))
        parallelism = (params.get("ParallelismConfiguration") or {}).get("MaxParallelExecutionSteps")
        execution = Execution(
            arn=f"{pipeline.arn}/execution/{execution_id}",
            pipeline=pipeline.name,
            pipeline_arn=pipeline.arn,
            created=now,
            status=ExecutionStatus.EXECUTING,
            definition=pipeline.definition,
            parameters={},
            last_modified=now,
            display_name=params.get("PipelineExecutionDisplayName")
            or f"execution-{int(now.timestamp() * 1000)}",
            description=params.get("PipelineExecutionDescription"),
            parallelism=parallelism or pipeline.parallelism,
            owner=owner,
            region=region,
        )
        try:
            definition = Definition.parse(pipeline.definition)
            self._check_properties(definition)
        except DefinitionError as exc:
            # The execution exists and failed at its start, naming what cannot run.
            execution = dataclasses.replace(
                execution,
                parameters={k: str(v) for k, v in given.items()},
                status=ExecutionStatus.FAILED,
                failure_reason=exc.message,
                ended=now,
            )
            return self._claimed(self.repository.add_execution(execution))
        unknown = sorted(set(given) - set(definition.parameters))
        if unknown:
            raise ValidationError(
                f"Pipeline {pipeline.name!r} has no parameter {unknown[0]!r} "
                f"(its parameters: {', '.join(definition.parameters) or 'none'})",
                field="PipelineParameters",
                value=unknown[0],
            )
        values: dict[str, Any] = {}
        for name, parameter in definition.parameters.items():
            if name in given:
                values[name] = parameter.coerce(given[name], field=f"PipelineParameters.{name}")
            elif parameter.default is not None:
                values[name] = parameter.default
            else:
                raise ValidationError(
                    f"Parameter {name!r} has no default value; give it in PipelineParameters",
                    field="PipelineParameters",
                    value=name,
                )
        execution = dataclasses.replace(execution, parameters=values)
        if self.engine is not None:
            self.engine.remember(execution, definition)
        started = self._claimed(self.repository.add_execution(execution))
        self._wake()
        return started

    def _claimed(self, execution: Execution) -> Execution:
        self._claims.claim_for(execution.arn, execution.owner)
        return execution

    def _check_properties(self, definition: Definition) -> None:
        if self.steps is None:
            return
        for step in definition.steps.values():
            for reference, where in references(step.arguments):
                if not reference.startswith("Steps."):
                    continue
                target, _, path = reference.removeprefix("Steps.").partition(".")
                if path.startswith("PropertyFiles."):
                    continue
                kind = definition.steps[target].type
                problem = (
                    self.steps.property_problem(kind, parse_path(path))
                    if kind in STEP_KINDS
                    else f"a {kind} step has no properties to read"
                )
                if problem:
                    where = f"{step.path}.Arguments.{where}"
                    raise DefinitionError(
                        f"Step {step.name!r}: {where} refers to {reference!r}, but a "
                        f"{kind} step has no such property: {problem}",
                        field=where,
                        value=reference,
                    )

    def execution(self, arn: str) -> Execution:
        return self.repository.execution(arn)

    def executions(self, params: Mapping[str, Any]) -> tuple[list[Execution], str | None]:
        pipeline = self.get(params["PipelineName"])
        page = Page.requested(params, default_size=50)
        found = self.repository.executions(
            pipeline.name,
            created_after=params.get("CreatedAfter"),
            created_before=params.get("CreatedBefore"),
            ascending=params.get("SortOrder") == "Ascending",
            offset=page.offset,
            limit=page.limit,
        )
        return page.cut(found)

    def stop(self, arn: str) -> Execution:
        def change(execution: Execution) -> Execution:
            if execution.status.is_terminal:
                raise ValidationError(
                    f"Pipeline execution {arn!r} is {execution.status.value} and cannot be stopped",
                    field="PipelineExecutionArn",
                    value=arn,
                )
            return dataclasses.replace(
                execution, status=ExecutionStatus.STOPPING, last_modified=self._clock.now()
            )

        stopping = self.repository.modify_execution(arn, change)
        self._wake()
        return stopping

    def update_execution(self, params: Mapping[str, Any]) -> Execution:
        def change(execution: Execution) -> Execution:
            parallelism = (params.get("ParallelismConfiguration") or {}).get("MaxParallelExecutionSteps")
            return dataclasses.replace(
                execution,
                display_name=params.get("PipelineExecutionDisplayName") or execution.display_name,
                description=params.get("PipelineExecutionDescription") or execution.description,
                parallelism=parallelism or execution.parallelism,
                last_modified=self._clock.now(),
            )

        return self.repository.modify_execution(params["PipelineExecutionArn"], change)

    def retry(self, arn: str, params: Mapping[str, Any]) -> Execution:
        """Run a failed or stopped execution on: its failed and stopped steps again, the rest on."""

        def change(execution: Execution) -> Execution:
            if execution.status not in (ExecutionStatus.FAILED, ExecutionStatus.STOPPED):
                raise ValidationError(
                    f"Pipeline execution {arn!r} is {execution.status.value}; only a Failed or Stopped "
                    "execution can be retried",
                    field="PipelineExecutionArn",
                    value=arn,
                )
            if not execution.steps and execution.failure_reason:
                raise ValidationError(
                    f"Pipeline execution {arn!r} failed at its start ({execution.failure_reason}); "
                    "fix the pipeline and start a new execution",
                    field="PipelineExecutionArn",
                    value=arn,
                )
            now = self._clock.now()
            steps = {
                name: run
                if run.status == StepStatus.SUCCEEDED
                else dataclasses.replace(  # run again at once, its attempts counting on
                    run, status=StepStatus.EXECUTING, retry_at=now, ended=None, retries={}
                )
                for name, run in execution.steps.items()
            }
            parallelism = (params.get("ParallelismConfiguration") or {}).get("MaxParallelExecutionSteps")
            return dataclasses.replace(
                execution,
                steps=steps,
                status=ExecutionStatus.EXECUTING,
                failure_reason=None,
                ended=None,
                last_modified=now,
                parallelism=parallelism or execution.parallelism,
            )

        retried = self.repository.modify_execution(arn, change)
        self._wake()
        return retried

    def definition_for(self, arn: str) -> Definition | None:
        execution = self.repository.execution(arn)
        try:
            return self._definition(execution)
        except DefinitionError:
            return None

    def _definition(self, execution: Execution) -> Definition:
        if self.engine is not None:
            return self.engine.definition(execution)
        definition = self._definitions.get(execution.arn)
        if definition is None:
            definition = self._definitions[execution.arn] = Definition.parse(execution.definition)
        return definition

    # -- the engine (one pass) ------------------------------------------------------------------
    # -- the engine (one pass) ------------------------------------------------------------------
    def tick(self) -> bool:
        return self.engine.tick() if self.engine is not None else False

    # -- reading what steps wrote ---------------------------------------------------------------
    def read_json(self, uri: str) -> Any:
        bucket, key = parse_s3_uri(uri, field="S3Uri")
        try:
            text = self._read_text(bucket, key, field="S3Uri", limit=_MAX_JSON_BYTES)
        except ValidationError as exc:
            raise ResolutionError(exc.message) from None
        try:
            return json.loads(text)
        except ValueError as exc:
            raise ResolutionError(f"{uri} is not JSON: {exc}") from None


def _check_json(definition: str) -> None:
    try:
        document = json.loads(definition)
    except ValueError as exc:
        raise ValidationError(
            f"PipelineDefinition is not JSON: {exc}", field="PipelineDefinition", value=definition[:100]
        ) from None
    if not isinstance(document, dict):
        raise ValidationError("PipelineDefinition must be a JSON object", field="PipelineDefinition")


__all__ = ["PipelineService", "PipelineSteps", "ServiceSteps"]
