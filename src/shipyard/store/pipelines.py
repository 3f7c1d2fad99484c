"""Pipelines, their executions, and the model registry's packages."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from shipyard.core.pipelines import Execution, ExecutionStatus, Pipeline, StepRun
from shipyard.errors import ConflictError, NotFoundError, ValidationError
from shipyard.store._db import Database
from shipyard.store._models import ModelPackageRow, PipelineExecutionRow, PipelineRow


class PipelineNotFound(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Pipeline {name!r} does not exist")


class DuplicatePipeline(ValidationError, ConflictError):
    """SageMaker answers a second CreatePipeline of a name with a ValidationException saying it
    "already exists"; the sagemaker SDK's upsert() relies on exactly that."""


class ExecutionNotFound(NotFoundError):
    def __init__(self, arn: str) -> None:
        super().__init__(f"Pipeline execution {arn!r} does not exist")


class PipelineRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    # -- pipelines ------------------------------------------------------------------------------
    def create(self, pipeline: Pipeline) -> Pipeline:
        with self._db.transaction() as session:
            if session.get(PipelineRow, pipeline.name) is not None:
                raise DuplicatePipeline(
                    f"Pipeline names must be unique within an account and region: a pipeline named "
                    f"{pipeline.name!r} already exists ({pipeline.arn})",
                    field="PipelineName",
                    value=pipeline.name,
                )
            row = PipelineRow(name=pipeline.name, arn=pipeline.arn, created_at=pipeline.created)
            _update_pipeline(row, pipeline)
            session.add(row)
        return pipeline

    def get(self, name: str) -> Pipeline:
        with self._db.transaction(readonly=True) as session:
            row = session.get(PipelineRow, name)
            if row is None:
                raise PipelineNotFound(name)
            return _load_pipeline(row)

    def modify(self, name: str, change: Callable[[Pipeline], Pipeline]) -> Pipeline:
        with self._db.transaction() as session:
            row = session.get(PipelineRow, name, with_for_update=True)
            if row is None:
                raise PipelineNotFound(name)
            pipeline = change(_load_pipeline(row))
            _update_pipeline(row, pipeline)
        return pipeline

    def delete(self, name: str) -> Pipeline:
        """Delete a pipeline and its executions; ConflictError while one of them runs."""
        with self._db.transaction() as session:
            row = session.get(PipelineRow, name, with_for_update=True)
            if row is None:
                raise PipelineNotFound(name)
            running = session.scalars(
                sa.select(PipelineExecutionRow.arn).where(
                    PipelineExecutionRow.pipeline == name,
                    PipelineExecutionRow.status.in_(
                        [ExecutionStatus.EXECUTING.value, ExecutionStatus.STOPPING.value]
                    ),
                )
            ).all()
            if running:
                raise ConflictError(
                    f"Pipeline {name!r} has {len(running)} running execution(s) ({', '.join(running)}); "
                    "stop them (StopPipelineExecution) before deleting it"
                )
            pipeline = _load_pipeline(row)
            session.execute(sa.delete(PipelineExecutionRow).where(PipelineExecutionRow.pipeline == name))
            session.delete(row)
        return pipeline

    def find(
        self,
        *,
        prefix: str | None,
        created_after: dt.datetime | None,
        created_before: dt.datetime | None,
        sort_by: str,
        ascending: bool,
        offset: int,
        limit: int,
    ) -> list[Pipeline]:
        stmt = sa.select(PipelineRow)
        if prefix:
            stmt = stmt.where(PipelineRow.name.startswith(prefix, autoescape=True))
        if created_after is not None:
            stmt = stmt.where(PipelineRow.created_at > created_after)
        if created_before is not None:
            stmt = stmt.where(PipelineRow.created_at < created_before)
        column: Any = PipelineRow.name if sort_by == "Name" else PipelineRow.created_at
        stmt = stmt.order_by(column.asc() if ascending else column.desc(), PipelineRow.name.asc())
        with self._db.transaction(readonly=True) as session:
            return [_load_pipeline(row) for row in session.scalars(stmt.offset(offset).limit(limit))]

    # -- executions -----------------------------------------------------------------------------
    def add_execution(self, execution: Execution) -> Execution:
        with self._db.transaction() as session:
            pipeline = session.get(PipelineRow, execution.pipeline, with_for_update=True)
            if pipeline is None:
                raise PipelineNotFound(execution.pipeline)
            pipeline.settings = {**pipeline.settings, "last_run": execution.created.isoformat()}
            row = PipelineExecutionRow(
                arn=execution.arn,
                pipeline=execution.pipeline,
                created_at=execution.created,
                definition=execution.definition,
            )
            _update_execution(row, execution)
            session.add(row)
        return execution

    def execution(self, arn: str) -> Execution:
        with self._db.transaction(readonly=True) as session:
            row = session.get(PipelineExecutionRow, arn)
            if row is None:
                raise ExecutionNotFound(arn)
            return _load_execution(row)

    def modify_execution(self, arn: str, change: Callable[[Execution], Execution]) -> Execution:
        with self._db.transaction() as session:
            row = session.get(PipelineExecutionRow, arn, with_for_update=True)
            if row is None:
                raise ExecutionNotFound(arn)
            execution = change(_load_execution(row))
            _update_execution(row, execution)
        return execution

    def executions(
        self,
        pipeline: str,
        *,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        ascending: bool = False,
        offset: int = 0,
        limit: int = 100,
    ) -> list[Execution]:
        stmt = sa.select(PipelineExecutionRow).where(PipelineExecutionRow.pipeline == pipeline)
        if created_after is not None:
            stmt = stmt.where(PipelineExecutionRow.created_at > created_after)
        if created_before is not None:
            stmt = stmt.where(PipelineExecutionRow.created_at < created_before)
        order = PipelineExecutionRow.created_at
        stmt = stmt.order_by(order.asc() if ascending else order.desc(), PipelineExecutionRow.arn.asc())
        with self._db.transaction(readonly=True) as session:
            return [_load_execution(row) for row in session.scalars(stmt.offset(offset).limit(limit))]

    def active_executions(self) -> list[Execution]:
        stmt = (
            sa.select(PipelineExecutionRow)
            .where(
                PipelineExecutionRow.status.in_(
                    [ExecutionStatus.EXECUTING.value, ExecutionStatus.STOPPING.value]
                )
            )
            .order_by(PipelineExecutionRow.created_at.asc())
        )
        with self._db.transaction(readonly=True) as session:
            return [_load_execution(row) for row in session.scalars(stmt)]


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _time(value: str | None) -> dt.datetime | None:
    return dt.datetime.fromisoformat(value) if value else None


def _update_pipeline(row: PipelineRow, pipeline: Pipeline) -> None:
    row.last_modified = pipeline.last_modified
    row.version = pipeline.version
    row.definition = pipeline.definition
    row.settings = {
        "display_name": pipeline.display_name,
        "description": pipeline.description,
        "role_arn": pipeline.role_arn,
        "parallelism": pipeline.parallelism,
        "last_run": pipeline.last_run.isoformat() if pipeline.last_run else None,
    }


def _load_pipeline(row: PipelineRow) -> Pipeline:
    settings = row.settings
    return Pipeline(
        name=row.name,
        arn=row.arn,
        created=_aware(row.created_at),  # type: ignore[arg-type]
        last_modified=_aware(row.last_modified),  # type: ignore[arg-type]
        definition=row.definition,
        version=row.version,
        display_name=settings.get("display_name"),
        description=settings.get("description"),
        role_arn=settings.get("role_arn"),
        parallelism=settings.get("parallelism"),
        last_run=_time(settings.get("last_run")),
    )


def _update_execution(row: PipelineExecutionRow, execution: Execution) -> None:
    row.status = execution.status.value
    row.last_modified = execution.last_modified
    row.state = {
        "pipeline_arn": execution.pipeline_arn,
        "parameters": dict(execution.parameters),
        "display_name": execution.display_name,
        "description": execution.description,
        "parallelism": execution.parallelism,
        "failure_reason": execution.failure_reason,
        "steps": [run.to_json() for run in execution.steps.values()],
        "owner": execution.owner,
        "region": execution.region,
        "ended": execution.ended.isoformat() if execution.ended else None,
    }


def _load_execution(row: PipelineExecutionRow) -> Execution:
    state = row.state
    return Execution(
        arn=row.arn,
        pipeline=row.pipeline,
        pipeline_arn=state["pipeline_arn"],
        created=_aware(row.created_at),  # type: ignore[arg-type]
        status=ExecutionStatus(row.status),
        definition=row.definition,
        parameters=state.get("parameters", {}),
        last_modified=_aware(row.last_modified),  # type: ignore[arg-type]
        display_name=state.get("display_name"),
        description=state.get("description"),
        parallelism=state.get("parallelism"),
        failure_reason=state.get("failure_reason"),
        steps={s["name"]: StepRun.from_json(s) for s in state.get("steps", [])},
        owner=state.get("owner"),
        region=state.get("region") or "",  # older rows: the region of its ARN
        ended=_time(state.get("ended")),
    )


# -- the model registry -------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ModelPackage:
    group: str
    version: int
    arn: str
    created: dt.datetime
    approval: str
    request: Mapping[str, Any]
    state: Mapping[str, Any]
    last_modified: dt.datetime


class ModelPackageRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def add(
        self, group: str, make: Callable[[int], ModelPackage], *, group_exists: Callable[[], bool]
    ) -> ModelPackage:
        """Add the group's next version (``make(version)`` builds it)."""
        with self._db.transaction() as session:
            self._db.lock(session, f"model-package-group/{group}")
            if not group_exists():
                raise ValidationError(
                    f"Model package group {group!r} does not exist; create it with CreateModelPackageGroup",
                    field="ModelPackageGroupName",
                    value=group,
                )
            latest = session.scalar(
                sa.select(sa.func.max(ModelPackageRow.version)).where(ModelPackageRow.group == group)
            )
            package = make((latest or 0) + 1)
            session.add(
                ModelPackageRow(
                    group=package.group,
                    version=package.version,
                    arn=package.arn,
                    created_at=package.created,
                    approval=package.approval,
                    request=dict(package.request),
                    state=dict(package.state),
                    last_modified=package.last_modified,
                )
            )
        return package

    def get(self, group: str, version: int) -> ModelPackage:
        with self._db.transaction(readonly=True) as session:
            row = session.get(ModelPackageRow, (group, version))
            if row is None:
                raise _missing_package(group, version)
            return _load_package(row)

    def by_arn(self, arn: str) -> ModelPackage:
        with self._db.transaction(readonly=True) as session:
            row = session.scalar(sa.select(ModelPackageRow).where(ModelPackageRow.arn == arn))
            if row is None:
                raise MissingModelPackage(
                    f"Model package {arn!r} does not exist", field="ModelPackageName", value=arn
                )
            return _load_package(row)

    def modify(
        self, group: str, version: int, change: Callable[[ModelPackage], ModelPackage]
    ) -> ModelPackage:
        with self._db.transaction() as session:
            row = session.get(ModelPackageRow, (group, version), with_for_update=True)
            if row is None:
                raise _missing_package(group, version)
            package = change(_load_package(row))
            row.approval = package.approval
            row.state = dict(package.state)
            row.request = dict(package.request)
            row.last_modified = package.last_modified
        return package

    def delete(self, group: str, version: int) -> None:
        with self._db.transaction() as session:
            row = session.get(ModelPackageRow, (group, version), with_for_update=True)
            if row is None:
                raise _missing_package(group, version)
            session.delete(row)

    def count(self, group: str) -> int:
        with self._db.transaction(readonly=True) as session:
            return int(
                session.scalar(
                    sa.select(sa.func.count())
                    .select_from(ModelPackageRow)
                    .where(ModelPackageRow.group == group)
                )
                or 0
            )

    def find(
        self,
        *,
        group: str | None,
        approval: str | None,
        name_contains: str | None,
        created_after: dt.datetime | None,
        created_before: dt.datetime | None,
        sort_by: str,
        ascending: bool,
        offset: int,
        limit: int,
    ) -> list[ModelPackage]:
        stmt = sa.select(ModelPackageRow)
        if group:
            stmt = stmt.where(ModelPackageRow.group == group)
        if approval:
            stmt = stmt.where(ModelPackageRow.approval == approval)
        if name_contains:
            stmt = stmt.where(
                sa.func.lower(ModelPackageRow.group).contains(name_contains.lower(), autoescape=True)
            )
        if created_after is not None:
            stmt = stmt.where(ModelPackageRow.created_at > created_after)
        if created_before is not None:
            stmt = stmt.where(ModelPackageRow.created_at < created_before)
        if sort_by == "Name":
            keys: list[Any] = [ModelPackageRow.group, ModelPackageRow.version]
        else:
            keys = [ModelPackageRow.created_at, ModelPackageRow.version]
        stmt = stmt.order_by(*(k.asc() if ascending else k.desc() for k in keys))
        with self._db.transaction(readonly=True) as session:
            return [_load_package(row) for row in session.scalars(stmt.offset(offset).limit(limit))]


class MissingModelPackage(ValidationError, NotFoundError):
    """SageMaker answers an unknown model package with a ValidationException."""


def _missing_package(group: str, version: int) -> MissingModelPackage:
    return MissingModelPackage(
        f"Model package version {version} of group {group!r} does not exist",
        field="ModelPackageName",
        value=f"{group}/{version}",
    )


def _load_package(row: ModelPackageRow) -> ModelPackage:
    return ModelPackage(
        group=row.group,
        version=row.version,
        arn=row.arn,
        created=_aware(row.created_at),  # type: ignore[arg-type]
        approval=row.approval,
        request=row.request,
        state=row.state,
        last_modified=_aware(row.last_modified),  # type: ignore[arg-type]
    )
