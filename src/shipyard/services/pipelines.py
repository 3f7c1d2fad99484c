"""Pipelines: SageMaker pipeline definitions run as DAGs, one pass at a time from the store.

Each pass (``tick``, in the scheduler's loop) reads every running execution, follows its running
steps (their jobs' Describe answers), retries what a RetryPolicy covers, and starts the steps whose
dependencies have succeeded, up to the execution's parallelism. Everything an execution knows is in
its row: a step is recorded ``Starting`` with the name of the job it is about to create before
the job is created, and names are derived from the execution, step and attempt, so a pass
interrupted between the two creates the same job again, finds it exists, and follows it: a
restarted server resumes every execution where it was.

Steps start their work through a :class:`StepRunner`: the SageMaker operations themselves,
validated and shaped as for any client (wired in by the API when the server starts), so a
pipeline's jobs are ordinary jobs (budgets, tags, costs, logs) and a step's properties are its
job's Describe answer.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import re
import secrets
from collections.abc import Mapping
from typing import Any, Protocol

from shipyard.core.arn import sagemaker_arn
from shipyard.core.pagination import page_of, paged
from shipyard.core.pipelines import (
    Definition,
    DefinitionError,
    Execution,
    ExecutionStatus,
    Pipeline,
    ResolutionError,
    Step,
    StepRun,
    StepStatus,
    decide,
    evaluate,
    exception_type,
    parse_path,
    references,
)
from shipyard.core.training import parse_s3_uri
from shipyard.errors import ConflictError, LimitExceededError, NotFoundError, ShipyardError, ValidationError
from shipyard.services.training import utcnow
from shipyard.storage import ObjectStore
from shipyard.store.pipelines import ExecutionNotFound, PipelineRepository

log = logging.getLogger(__name__)

DEFAULT_PARALLELISM = 50
_MAX_JSON_BYTES = 1 << 20  # a property file or a function step's result read for an expression


@dataclasses.dataclass(frozen=True)
class StepKind:
    """How a step type maps onto SageMaker operations."""

    create: str
    describe: str
    name_field: str | None  # the create request's name member (None: the service names it)
    arn_field: str  # in the create answer
    metadata: str  # ListPipelineExecutionSteps' Metadata member
    status_field: str | None = None  # in the describe answer (None: done once created)
    stop: str | None = None
    max_name: int = 63


STEP_KINDS: Mapping[str, StepKind] = {
    "Processing": StepKind(
        "CreateProcessingJob",
        "DescribeProcessingJob",
        "ProcessingJobName",
        "ProcessingJobArn",
        "ProcessingJob",
        "ProcessingJobStatus",
        "StopProcessingJob",
    ),
    "Training": StepKind(
        "CreateTrainingJob",
        "DescribeTrainingJob",
        "TrainingJobName",
        "TrainingJobArn",
        "TrainingJob",
        "TrainingJobStatus",
        "StopTrainingJob",
    ),
    "Tuning": StepKind(
        "CreateHyperParameterTuningJob",
        "DescribeHyperParameterTuningJob",
        "HyperParameterTuningJobName",
        "HyperParameterTuningJobArn",
        "TuningJob",
        "HyperParameterTuningJobStatus",
        "StopHyperParameterTuningJob",
        max_name=32,
    ),
    "Transform": StepKind(
        "CreateTransformJob",
        "DescribeTransformJob",
        "TransformJobName",
        "TransformJobArn",
        "TransformJob",
        "TransformJobStatus",
        "StopTransformJob",
    ),
    "Model": StepKind("CreateModel", "DescribeModel", "ModelName", "ModelArn", "Model"),
    "CreateModel": StepKind("CreateModel", "DescribeModel", "ModelName", "ModelArn", "Model"),
    "RegisterModel": StepKind(
        "CreateModelPackage", "DescribeModelPackage", None, "ModelPackageArn", "RegisterModel"
    ),
}


class StepRunner(Protocol):
    """The SageMaker operations, called as a client would (validated, shaped, budget-guarded)."""

    def call(
        self, operation: str, request: Mapping[str, Any], *, owner: str | None, region: str
    ) -> dict[str, Any]: ...

    def property_problem(self, step_type: str, path: list[str | int]) -> str | None:
        """Why ``path`` is not a property of a step of that type (None when it is)."""
        ...

    def ensure_model_package_group(self, name: str, *, owner: str | None, region: str) -> None: ...


class PipelineService:
    def __init__(self, repository: PipelineRepository, objects: ObjectStore, *, account_id: str) -> None:
        self.repository = repository
        self._objects = objects
        self._account_id = account_id
        self.runner: StepRunner | None = None  # set by the API when the server starts
        self._definitions: dict[str, Definition] = {}  # execution ARN → its parsed definition

    # -- pipelines ------------------------------------------------------------------------------
    def create(self, params: Mapping[str, Any], *, region: str) -> Pipeline:
        name = params["PipelineName"]
        definition = self._definition_text(params)
        _check_json(definition)
        now = utcnow()
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
        return self.repository.create(pipeline)

    def update(self, params: Mapping[str, Any]) -> Pipeline:
        changes: dict[str, Any] = {}
        if params.get("PipelineDefinition") is not None or params.get("PipelineDefinitionS3Location"):
            changes["definition"] = self._definition_text(params)
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
                pipeline, **changes, version=pipeline.version + 1, last_modified=utcnow()
            )

        return self.repository.modify(self.pipeline_name(params["PipelineName"]), change)

    def get(self, name_or_arn: str) -> Pipeline:
        return self.repository.get(self.pipeline_name(name_or_arn))

    def delete(self, name: str) -> Pipeline:
        pipeline = self.repository.delete(self.pipeline_name(name))
        return pipeline

    def find(self, params: Mapping[str, Any]) -> tuple[list[Pipeline], str | None]:
        offset, limit = page_of(params, default_size=50)
        found = self.repository.find(
            prefix=params.get("PipelineNamePrefix"),
            created_after=params.get("CreatedAfter"),
            created_before=params.get("CreatedBefore"),
            sort_by=params.get("SortBy", "CreationTime"),
            ascending=params.get("SortOrder") == "Ascending",
            offset=offset,
            limit=limit + 1,
        )
        return paged(found, offset, limit)

    @staticmethod
    def pipeline_name(name_or_arn: str) -> str:
        return name_or_arn.split(":pipeline/", 1)[1] if ":pipeline/" in name_or_arn else name_or_arn

    def _definition_text(self, params: Mapping[str, Any]) -> str:
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
        now = utcnow()
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
            return self.repository.add_execution(execution)
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
        self._definitions[execution.arn] = definition
        return self.repository.add_execution(execution)

    def _check_properties(self, definition: Definition) -> None:
        if self.runner is None:
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
                    self.runner.property_problem(kind, parse_path(path))
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
        offset, limit = page_of(params, default_size=50)
        found = self.repository.executions(
            pipeline.name,
            created_after=params.get("CreatedAfter"),
            created_before=params.get("CreatedBefore"),
            ascending=params.get("SortOrder") == "Ascending",
            offset=offset,
            limit=limit + 1,
        )
        return paged(found, offset, limit)

    def stop(self, arn: str) -> Execution:
        def change(execution: Execution) -> Execution:
            if execution.status.is_terminal:
                raise ValidationError(
                    f"Pipeline execution {arn!r} is {execution.status.value} and cannot be stopped",
                    field="PipelineExecutionArn",
                    value=arn,
                )
            return dataclasses.replace(execution, status=ExecutionStatus.STOPPING, last_modified=utcnow())

        return self.repository.modify_execution(arn, change)

    def update_execution(self, params: Mapping[str, Any]) -> Execution:
        def change(execution: Execution) -> Execution:
            parallelism = (params.get("ParallelismConfiguration") or {}).get("MaxParallelExecutionSteps")
            return dataclasses.replace(
                execution,
                display_name=params.get("PipelineExecutionDisplayName") or execution.display_name,
                description=params.get("PipelineExecutionDescription") or execution.description,
                parallelism=parallelism or execution.parallelism,
                last_modified=utcnow(),
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
            now = utcnow()
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

        return self.repository.modify_execution(arn, change)

    def definition_for(self, arn: str) -> Definition | None:
        execution = self.repository.execution(arn)
        try:
            return self._definition(execution)
        except DefinitionError:
            return None

    def _definition(self, execution: Execution) -> Definition:
        definition = self._definitions.get(execution.arn)
        if definition is None:
            definition = self._definitions[execution.arn] = Definition.parse(execution.definition)
        return definition

    # -- the engine (one pass) ------------------------------------------------------------------
    def tick(self) -> bool:
        if self.runner is None:
            return False
        executions = self.repository.active_executions()
        for execution in executions:
            try:
                self._advance(execution)
            except ExecutionNotFound:
                continue  # deleted meanwhile
            except Exception as exc:
                log.exception("Pipeline execution %s: pass failed", execution.arn)
                self._finish(execution.arn, ExecutionStatus.FAILED, f"InternalServerError: {exc}")
        live = {e.arn for e in executions}
        for arn in [a for a in self._definitions if a not in live]:
            del self._definitions[arn]
        return bool(executions)

    def _advance(self, execution: Execution) -> None:
        definition = self._definition(execution)
        now = utcnow()
        for run in list(execution.steps.values()):
            if not run.status.is_terminal:
                self._follow(execution, definition.steps[run.name], run, now)
        execution = self.repository.execution(execution.arn)
        if execution.status == ExecutionStatus.STOPPING:
            for run in execution.steps.values():
                self._stop_step(execution, run)
            execution = self.repository.execution(execution.arn)
            if all(r.status.is_terminal for r in execution.steps.values()):
                self._finish(execution.arn, ExecutionStatus.STOPPED, None)
            return
        limit = execution.parallelism or DEFAULT_PARALLELISM
        while not _failures(execution):  # a condition decided at once makes its branch ready
            active = sum(not r.status.is_terminal for r in execution.steps.values())
            ready = self._ready(definition, execution.steps)[: max(0, limit - active)]
            for step in ready:
                if self._start_step(execution, step, now).status in (StepStatus.FAILED, StepStatus.STOPPED):
                    break
            execution = self.repository.execution(execution.arn)
            if not ready:
                break
        if any(not r.status.is_terminal for r in execution.steps.values()):
            return
        failures = _failures(execution)
        if failures:
            first = failures[0]
            reason = f"Step {first.name!r} failed: {first.failure_reason or first.status.value}"
            self._finish(execution.arn, ExecutionStatus.FAILED, reason)
        elif not self._ready(definition, execution.steps):
            self._finish(execution.arn, ExecutionStatus.SUCCEEDED, None)

    def _ready(self, definition: Definition, runs: Mapping[str, StepRun]) -> list[Step]:
        ready = []
        for name, step in definition.steps.items():
            if name in runs:
                continue
            if step.branch is not None:
                condition = runs.get(step.branch[0])
                if condition is None or condition.status != StepStatus.SUCCEEDED:
                    continue
                if (condition.metadata.get("Condition", {}).get("Outcome") == "True") != step.branch[1]:
                    continue
            if all(
                d in runs and runs[d].status == StepStatus.SUCCEEDED for d in definition.dependencies(name)
            ):
                ready.append(step)
        return ready

    def _finish(self, arn: str, status: ExecutionStatus, reason: str | None) -> None:
        def change(execution: Execution) -> Execution:
            now = utcnow()
            return dataclasses.replace(
                execution, status=status, failure_reason=reason, ended=now, last_modified=now
            )

        self.repository.modify_execution(arn, change)
        self._definitions.pop(arn, None)
        log.info("Pipeline execution %s: %s%s", arn, status.value, f" ({reason})" if reason else "")

    def _save(self, execution: Execution, run: StepRun) -> StepRun:
        self.repository.modify_execution(execution.arn, lambda e: e.with_step(run, utcnow()))
        return run

    # -- starting a step ------------------------------------------------------------------------
    def _start_step(
        self, execution: Execution, step: Step, now: dt.datetime, previous: StepRun | None = None
    ) -> StepRun:
        """Start a step (``previous``: its last attempt, when this one is a retry)."""
        run = StepRun(step.name, step.type, StepStatus.STARTING, utcnow())
        if previous is not None:
            run = dataclasses.replace(
                run,
                started=previous.started,
                attempts=previous.attempts + 1,
                retries=previous.retries,
                earlier_jobs=previous.jobs,
            )
        scope = _Scope(self, execution)
        try:
            if step.type == "Condition":
                outcome = all(decide(c, scope) for c in step.arguments["Conditions"])
                return self._save(
                    execution,
                    dataclasses.replace(
                        run,
                        status=StepStatus.SUCCEEDED,
                        ended=utcnow(),
                        metadata={"Condition": {"Outcome": "True" if outcome else "False"}},
                    ),
                )
            if step.type == "Fail":
                arguments = step.arguments if isinstance(step.arguments, dict) else {}
                message = evaluate(arguments.get("ErrorMessage", ""), scope)
                message = message if isinstance(message, str) else json.dumps(message)
                return self._save(
                    execution,
                    dataclasses.replace(
                        run,
                        status=StepStatus.FAILED,
                        ended=utcnow(),
                        failure_reason=message or "The Fail step ran",
                        metadata={"Fail": {"ErrorMessage": message}},
                    ),
                )
            request = evaluate(step.arguments, scope)
        except ResolutionError as exc:
            return self._save(
                execution,
                dataclasses.replace(
                    run,
                    status=StepStatus.FAILED,
                    ended=utcnow(),
                    failure_reason=f"Step {step.name!r} could not resolve its arguments: {exc}",
                ),
            )
        if step.cache is not None and step.cache.enabled and step.is_job:
            key = step.cache_key(request, execution.pipeline)
            run = dataclasses.replace(run, cache_key=key)
            hit = self._cached(execution, step, key, now)
            if hit is not None:
                log.info(
                    "Pipeline execution %s: step %s reuses %s", execution.arn, step.name, hit.cache_source
                )
                return self._save(execution, hit)
        kind = STEP_KINDS[step.type]
        job_name = self._job_name(execution, step, run.attempts) if kind.name_field else None
        run = dataclasses.replace(run, job={"kind": step.type, "name": job_name or "", "request": request})
        self._save(execution, run)  # recorded before the job exists: a restart finds and follows it
        return self._launch(execution, step, run)

    def _launch(self, execution: Execution, step: Step, run: StepRun) -> StepRun:
        assert self.runner is not None and run.job is not None
        kind = STEP_KINDS[step.type]
        request = dict(run.job["request"])
        name = run.job["name"]
        if kind.name_field:
            request[kind.name_field] = name
        try:
            if step.type == "RegisterModel" and request.get("ModelPackageGroupName"):
                self.runner.ensure_model_package_group(
                    request["ModelPackageGroupName"], owner=execution.owner, region=execution.region
                )
            try:
                answer = self.runner.call(
                    kind.create, request, owner=execution.owner, region=execution.region
                )
                arn = answer[kind.arn_field]
            except ConflictError:
                if not kind.name_field:
                    raise
                arn = self._describe(step, name)[kind.arn_field]  # created before a restart: follow it
        except ValidationError as exc:
            return self._save(
                execution,
                dataclasses.replace(
                    run,
                    status=StepStatus.FAILED,
                    ended=utcnow(),
                    failure_reason=f"ValidationException: {exc.message}",
                ),
            )
        except LimitExceededError as exc:
            return self._failed(
                execution, step, run, f"ResourceLimitExceeded: {exc.message}", "SageMaker.RESOURCE_LIMIT"
            )
        except Exception as exc:
            log.exception("Pipeline execution %s: step %s could not start", execution.arn, step.name)
            return self._failed(execution, step, run, f"InternalServerError: {exc}", "Step.SERVICE_FAULT")
        job = {"kind": step.type, "name": name or arn, "arn": arn}
        run = dataclasses.replace(
            run, job=job, status=StepStatus.EXECUTING, metadata={kind.metadata: {"Arn": arn}}
        )
        if kind.status_field is None:  # a model or a model package: done once created
            run = dataclasses.replace(
                run, status=StepStatus.SUCCEEDED, ended=utcnow(), properties=self._describe(step, name or arn)
            )
        return self._save(execution, run)

    def _job_name(self, execution: Execution, step: Step, attempt: int) -> str:
        digest = hashlib.sha256(f"{execution.arn}/{step.name}/{attempt}".encode()).hexdigest()[:10]
        if STEP_KINDS[step.type].max_name < 40:
            return f"{execution.id}-{digest}"
        slug = re.sub(r"[^A-Za-z0-9]+", "-", step.name).strip("-")[:28]
        return "-".join(p for p in ("pipelines", execution.id, slug, digest) if p)

    def _cached(self, execution: Execution, step: Step, key: str, now: dt.datetime) -> StepRun | None:
        expire = step.cache.expire_after if step.cache else None
        since = now - expire if expire else None
        for earlier in self.repository.executions(execution.pipeline, created_after=since, limit=200):
            if earlier.arn == execution.arn:
                continue
            run = earlier.steps.get(step.name)
            if (
                run is not None
                and run.status == StepStatus.SUCCEEDED
                and run.cache_key == key
                and run.properties is not None
                and (since is None or (run.ended is not None and run.ended >= since))
            ):
                source = run.cache_source or earlier.arn
                return dataclasses.replace(
                    run, started=now, ended=utcnow(), cache_source=source, attempts=1, retries={}
                )
        return None

    # -- following a step -----------------------------------------------------------------------
    def _describe(self, step: Step, name: str) -> dict[str, Any]:
        assert self.runner is not None
        kind = STEP_KINDS[step.type]
        request = {kind.name_field or "ModelPackageName": name}
        properties = self.runner.call(kind.describe, request, owner=None, region="us-east-1")
        if step.type == "Tuning":
            properties["TrainingJobSummaries"] = self._tuning_summaries(name, properties)
        return properties

    def _tuning_summaries(self, name: str, described: Mapping[str, Any]) -> list[dict[str, Any]]:
        """The trials, best first: what ``TrainingJobSummaries[0]`` of a Tuning step means."""
        assert self.runner is not None
        summaries: list[dict[str, Any]] = []
        token = None
        while True:
            request: dict[str, Any] = {"HyperParameterTuningJobName": name, "MaxResults": 100}
            if token:
                request["NextToken"] = token
            page = self.runner.call(
                "ListTrainingJobsForHyperParameterTuningJob", request, owner=None, region="us-east-1"
            )
            summaries += page.get("TrainingJobSummaries", [])
            token = page.get("NextToken")
            if not token:
                break
        objective = described.get("HyperParameterTuningJobConfig", {}).get(
            "HyperParameterTuningJobObjective", {}
        )
        maximize = objective.get("Type") == "Maximize"

        def key(summary: Mapping[str, Any]) -> tuple[int, float, float, str]:
            # Best first; among equals the earliest, as BestTrainingJob picks.
            value = (summary.get("FinalHyperParameterTuningJobObjectiveMetric") or {}).get("Value")
            order = (float(summary.get("CreationTime") or 0), str(summary.get("TrainingJobName")))
            if value is None:
                return (1, 0.0, *order)
            return (0, -value if maximize else value, *order)

        return sorted(summaries, key=key)

    def _follow(self, execution: Execution, step: Step, run: StepRun, now: dt.datetime) -> None:
        if run.retry_at is not None:
            if execution.status == ExecutionStatus.STOPPING:
                self._save(
                    execution, dataclasses.replace(run, status=StepStatus.STOPPED, ended=now, retry_at=None)
                )
            elif now >= run.retry_at:
                log.info(
                    "Pipeline execution %s: retrying step %s (attempt %d)",
                    execution.arn,
                    step.name,
                    run.attempts + 1,
                )
                self._start_step(execution, step, now, previous=run)
            return
        if run.status == StepStatus.STARTING:
            if execution.status == ExecutionStatus.STOPPING:
                self._save(execution, dataclasses.replace(run, status=StepStatus.STOPPED, ended=now))
            else:
                self._launch(execution, step, run)  # recorded, then the server stopped: create (or find) it
            return
        kind = STEP_KINDS.get(step.type)
        if kind is None or kind.status_field is None or run.job is None:
            return
        try:
            described = self._describe(step, run.job["name"])
        except NotFoundError:
            self._failed(
                execution,
                step,
                run,
                f"InternalServerError: its job {run.job['name']!r} no longer exists",
                None,
            )
            return
        status = described.get(kind.status_field)
        if status == "Completed":
            self._save(
                execution,
                dataclasses.replace(run, status=StepStatus.SUCCEEDED, ended=utcnow(), properties=described),
            )
        elif status == "Failed":
            reason = described.get("FailureReason") or "the job failed"
            self._failed(execution, step, run, reason, exception_type(reason, job=True), properties=described)
        elif status == "Stopped":
            self._save(
                execution,
                dataclasses.replace(
                    run,
                    status=StepStatus.STOPPED,
                    ended=utcnow(),
                    properties=described,
                    failure_reason="The job was stopped",
                ),
            )

    def _failed(
        self,
        execution: Execution,
        step: Step,
        run: StepRun,
        reason: str,
        exception: str | None,
        *,
        properties: Mapping[str, Any] | None = None,
    ) -> StepRun:
        """The step failed: retry it when a policy covers the failure, else it failed."""
        now = utcnow()
        for i, policy in enumerate(step.retry_policies):
            done = run.retries.get(str(i), 0)
            if exception is not None and policy.covers(exception) and policy.allows(done, run.started, now):
                wait = policy.delay(done)
                log.info(
                    "Pipeline execution %s: step %s failed (%s); retrying in %.1fs",
                    execution.arn,
                    step.name,
                    reason,
                    wait,
                )
                return self._save(
                    execution,
                    dataclasses.replace(
                        run,
                        status=StepStatus.EXECUTING,
                        failure_reason=reason,
                        retry_at=now + dt.timedelta(seconds=wait),
                        retries={**run.retries, str(i): done + 1},
                        properties=properties or run.properties,
                    ),
                )
        return self._save(
            execution,
            dataclasses.replace(
                run,
                status=StepStatus.FAILED,
                ended=now,
                failure_reason=reason,
                properties=properties or run.properties,
            ),
        )

    def _stop_step(self, execution: Execution, run: StepRun) -> None:
        kind = STEP_KINDS.get(run.type)
        if run.status != StepStatus.EXECUTING or kind is None or kind.stop is None or run.job is None:
            return
        assert self.runner is not None
        try:
            self.runner.call(
                kind.stop,
                {kind.name_field or "": run.job["name"]},
                owner=execution.owner,
                region=execution.region,
            )
        except ShipyardError as exc:
            log.info("Pipeline execution %s: stopping %s: %s", execution.arn, run.job["name"], exc)
        self._save(execution, dataclasses.replace(run, status=StepStatus.STOPPING))

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


def _failures(execution: Execution) -> list[StepRun]:
    return [r for r in execution.steps.values() if r.status in (StepStatus.FAILED, StepStatus.STOPPED)]


class _Scope:
    """What an execution's expressions read."""

    def __init__(self, service: PipelineService, execution: Execution) -> None:
        self._service = service
        self._execution = execution

    def parameter(self, name: str) -> Any:
        if name not in self._execution.parameters:
            raise ResolutionError(f"there is no parameter {name!r}")
        return self._execution.parameters[name]

    def execution_variable(self, name: str) -> Any:
        execution = self._execution
        values = {
            "PipelineExecutionId": execution.id,
            "PipelineExecutionArn": execution.arn,
            "PipelineName": execution.pipeline,
            "PipelineArn": execution.pipeline_arn,
            "StartDateTime": execution.created.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
            "CurrentDateTime": utcnow().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        }
        if name not in values:
            raise ResolutionError(f"there is no execution variable {name!r}")
        return values[name]

    def _run(self, step: str) -> StepRun:
        run = self._execution.steps.get(step)
        if run is None or run.properties is None:
            raise ResolutionError(f"step {step!r} has not run, so its properties cannot be read")
        return run

    def step_properties(self, step: str) -> Mapping[str, Any]:
        return self._run(step).properties or {}

    def property_file(self, step: str, name: str) -> Any:
        run = self._run(step)
        definition = self._service._definition(self._execution)
        file = definition.steps[step].property_file(name)
        if file is None:
            raise ResolutionError(f"step {step!r} has no property file {name!r}")
        outputs = (run.properties or {}).get("ProcessingOutputConfig", {}).get("Outputs", [])
        output = next((o for o in outputs if o.get("OutputName") == file.output_name), None)
        if output is None:
            raise ResolutionError(
                f"step {step!r} has no output {file.output_name!r} for property file {name!r}"
            )
        uri = output["S3Output"]["S3Uri"].rstrip("/") + "/" + file.file_path.lstrip("/")
        return self._service.read_json(uri)

    def json_file(self, s3_uri: str) -> Any:
        return self._service.read_json(s3_uri)


def _check_json(definition: str) -> None:
    try:
        document = json.loads(definition)
    except ValueError as exc:
        raise ValidationError(
            f"PipelineDefinition is not JSON: {exc}", field="PipelineDefinition", value=definition[:100]
        ) from None
    if not isinstance(document, dict):
        raise ValidationError("PipelineDefinition must be a JSON object", field="PipelineDefinition")
