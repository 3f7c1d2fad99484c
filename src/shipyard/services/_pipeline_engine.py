"""The pipeline engine: one pass (:meth:`PipelineEngine.tick`) advances every running execution.

Each pass reads every running execution, follows its running steps (their jobs' Describe answers,
through the :class:`~shipyard.services._pipeline_steps.PipelineSteps` port), retries what a
RetryPolicy covers, and starts the steps whose dependencies have succeeded, up to the
execution's parallelism. The decisions are :mod:`shipyard.core.pipelines`' pure functions; this
module reads, asks them, and writes what they decided.

Everything an execution knows is in its row: a step is recorded ``Starting`` with the name of the
job it is about to create before the job is created, and names are derived from the execution,
step and attempt, so a pass interrupted between the two creates the same job again, finds it
exists, and follows it: a restarted server resumes every execution where it was.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.pipelines import (
    DEFAULT_PARALLELISM,
    STEP_KINDS,
    Definition,
    Execution,
    ExecutionStatus,
    ResolutionError,
    Step,
    StepRun,
    StepStatus,
    cached_run,
    decide,
    evaluate,
    execution_outcome,
    ready_steps,
    retry_for,
    step_outcome,
)
from shipyard.errors import (
    AccessDenied,
    ConflictError,
    LimitExceededError,
    NotFoundError,
    ShipyardError,
    ValidationError,
)
from shipyard.services._pipeline_steps import PipelineSteps
from shipyard.store.pipelines import ExecutionNotFound, PipelineRepository

log = logging.getLogger(__name__)


class PipelineEngine:
    """Args:
    repository: Where executions are.
    steps: The port through which steps create, follow and stop their work.
    read_json: A JSON document by ``s3://`` URI (a property file, ``Std:JsonGet``); raises
        ResolutionError when it cannot be read.
    clock: The time steps start, end and retry at.
    """

    def __init__(
        self,
        repository: PipelineRepository,
        steps: PipelineSteps,
        read_json: Callable[[str], Any],
        *,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.repository = repository
        self.steps = steps
        self._read_json = read_json
        self._clock = clock
        self._definitions: dict[str, Definition] = {}  # execution ARN → its parsed definition

    def definition(self, execution: Execution) -> Definition:
        definition = self._definitions.get(execution.arn)
        if definition is None:
            definition = self._definitions[execution.arn] = Definition.parse(execution.definition)
        return definition

    def remember(self, execution: Execution, definition: Definition) -> None:
        self._definitions[execution.arn] = definition

    # -- one pass -------------------------------------------------------------------------------
    def tick(self) -> bool:
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
        definition = self.definition(execution)
        now = self._clock.now()
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
        while True:  # a condition decided at once makes its branch ready
            ready = ready_steps(definition, execution.steps, parallelism=limit)
            for step in ready:
                if self._start_step(execution, step, now).status in (StepStatus.FAILED, StepStatus.STOPPED):
                    break
            execution = self.repository.execution(execution.arn)
            if not ready:
                break
        outcome = execution_outcome(definition, execution.steps)
        if outcome is not None:
            self._finish(execution.arn, *outcome)

    def _finish(self, arn: str, status: ExecutionStatus, reason: str | None) -> None:
        def change(execution: Execution) -> Execution:
            now = self._clock.now()
            return dataclasses.replace(
                execution, status=status, failure_reason=reason, ended=now, last_modified=now
            )

        self.repository.modify_execution(arn, change)
        self._definitions.pop(arn, None)
        log.info("Pipeline execution %s: %s%s", arn, status.value, f" ({reason})" if reason else "")

    def _save(self, execution: Execution, run: StepRun) -> StepRun:
        self.repository.modify_execution(execution.arn, lambda e: e.with_step(run, self._clock.now()))
        return run

    # -- starting a step ------------------------------------------------------------------------
    def _start_step(
        self, execution: Execution, step: Step, now: dt.datetime, previous: StepRun | None = None
    ) -> StepRun:
        """Start a step (``previous``: its last attempt, when this one is a retry)."""
        run = StepRun(step.name, step.type, StepStatus.STARTING, self._clock.now())
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
                        ended=self._clock.now(),
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
                        ended=self._clock.now(),
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
                    ended=self._clock.now(),
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
        assert run.job is not None
        kind = STEP_KINDS[step.type]
        request = dict(run.job["request"])
        name = run.job["name"]
        if kind.name_field:
            request[kind.name_field] = name
        try:
            try:
                arn = self.steps.create(step.type, request, owner=execution.owner, region=execution.region)
            except ConflictError:
                if not kind.name_field:
                    raise
                arn = self.steps.describe(step.type, name)[kind.arn_field]  # made before a restart: follow it
        except ValidationError as exc:
            return self._save(
                execution,
                dataclasses.replace(
                    run,
                    status=StepStatus.FAILED,
                    ended=self._clock.now(),
                    failure_reason=f"ValidationException: {exc.message}",
                ),
            )
        except LimitExceededError as exc:
            return self._failed(
                execution, step, run, f"ResourceLimitExceeded: {exc.message}", "SageMaker.RESOURCE_LIMIT"
            )
        except AccessDenied as exc:  # the execution's owner may not make this step's work
            return self._failed(execution, step, run, f"AccessDeniedException: {exc.message}", None)
        except Exception as exc:
            log.exception("Pipeline execution %s: step %s could not start", execution.arn, step.name)
            return self._failed(execution, step, run, f"InternalServerError: {exc}", "Step.SERVICE_FAULT")
        job = {"kind": step.type, "name": name or arn, "arn": arn}
        run = dataclasses.replace(
            run, job=job, status=StepStatus.EXECUTING, metadata={kind.metadata: {"Arn": arn}}
        )
        if kind.status_field is None:  # a model or a model package: done once created
            run = dataclasses.replace(
                run,
                status=StepStatus.SUCCEEDED,
                ended=self._clock.now(),
                properties=self.steps.describe(step.type, name or arn),
            )
        return self._save(execution, run)

    @staticmethod
    def _job_name(execution: Execution, step: Step, attempt: int) -> str:
        digest = hashlib.sha256(f"{execution.arn}/{step.name}/{attempt}".encode()).hexdigest()[:10]
        if STEP_KINDS[step.type].max_name < 40:
            return f"{execution.id}-{digest}"
        # Lowercase, as the job's ARN names it (core/arn.py, as AWS's do): the SDK v3's
        # execution.result() describes a @step's job by the name in the step's metadata ARN.
        slug = re.sub(r"[^A-Za-z0-9]+", "-", step.name).strip("-")[:28].lower()
        return "-".join(p for p in ("pipelines", execution.id, slug, digest) if p)

    def _cached(self, execution: Execution, step: Step, key: str, now: dt.datetime) -> StepRun | None:
        expire = step.cache.expire_after if step.cache else None
        since = now - expire if expire else None
        earlier = [
            (e.arn, e.steps.get(step.name))
            for e in self.repository.executions(execution.pipeline, created_after=since, limit=200)
            if e.arn != execution.arn
        ]
        hit = cached_run(earlier, key, since=since)
        if hit is None:
            return None
        source, run = hit
        return dataclasses.replace(
            run, started=now, ended=self._clock.now(), cache_source=source, attempts=1, retries={}
        )

    # -- following a step -----------------------------------------------------------------------
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
            described = self.steps.describe(step.type, run.job["name"])
        except NotFoundError:
            self._failed(
                execution,
                step,
                run,
                f"InternalServerError: its job {run.job['name']!r} no longer exists",
                None,
            )
            return
        outcome = step_outcome(step.type, described)
        if outcome is None:
            return
        if outcome.status == StepStatus.FAILED:
            reason = outcome.failure_reason or "the job failed"
            self._failed(execution, step, run, reason, outcome.exception_type, properties=described)
            return
        self._save(
            execution,
            dataclasses.replace(
                run,
                status=outcome.status,
                ended=self._clock.now(),
                properties=described,
                failure_reason=outcome.failure_reason or run.failure_reason,
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
        now = self._clock.now()
        retry = retry_for(step.retry_policies, run.retries, exception, first_started=run.started, now=now)
        if retry is not None:
            log.info(
                "Pipeline execution %s: step %s failed (%s); retrying in %.1fs",
                execution.arn,
                step.name,
                reason,
                retry.delay_seconds,
            )
            done = run.retries.get(str(retry.policy), 0)
            return self._save(
                execution,
                dataclasses.replace(
                    run,
                    status=StepStatus.EXECUTING,
                    failure_reason=reason,
                    retry_at=retry.at,
                    retries={**run.retries, str(retry.policy): done + 1},
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
        try:
            self.steps.stop(run.type, run.job["name"])
        except ShipyardError as exc:
            log.info("Pipeline execution %s: stopping %s: %s", execution.arn, run.job["name"], exc)
        self._save(execution, dataclasses.replace(run, status=StepStatus.STOPPING))


class _Scope:
    """What an execution's expressions read."""

    def __init__(self, engine: PipelineEngine, execution: Execution) -> None:
        self._engine = engine
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
            "CurrentDateTime": self._engine._clock.now().strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
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
        file = self._engine.definition(self._execution).steps[step].property_file(name)
        if file is None:
            raise ResolutionError(f"step {step!r} has no property file {name!r}")
        outputs = (run.properties or {}).get("ProcessingOutputConfig", {}).get("Outputs", [])
        output = next((o for o in outputs if o.get("OutputName") == file.output_name), None)
        if output is None:
            raise ResolutionError(
                f"step {step!r} has no output {file.output_name!r} for property file {name!r}"
            )
        uri = output["S3Output"]["S3Uri"].rstrip("/") + "/" + file.file_path.lstrip("/")
        return self._engine._read_json(uri)

    def json_file(self, s3_uri: str) -> Any:
        return self._engine._read_json(s3_uri)
