"""Jobs the scheduler runs (training, processing and transform, a table each) and training metric series."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Generic

import sqlalchemy as sa

from shipyard.core.jobs import Job, JobRun, JobState, SpecT, StatusTransition
from shipyard.core.processing import ProcessingJobSpec
from shipyard.core.training import MetricPoint, SecondaryStatus, TrainingJobSpec, TrainingJobStatus
from shipyard.core.transform import TransformJobSpec
from shipyard.errors import ConflictError, NotFoundError
from shipyard.store._db import Database
from shipyard.store._models import JobRow, MetricPointRow, ProcessingJobRow, TrainingJobRow, TransformJobRow


class TrainingJobNotFound(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Training job {name!r} does not exist")
        self.name = name


class TransformJobNotFound(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Could not find transform job {name!r}")
        self.name = name


class ProcessingJobNotFound(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Could not find requested job with name {name}")
        self.name = name


@dataclasses.dataclass(frozen=True)
class TrainingJobQuery:
    """ListTrainingJobs filters. Names match case-insensitively, as in SageMaker."""

    name_contains: str | None = None
    status: TrainingJobStatus | None = None
    created_after: dt.datetime | None = None
    created_before: dt.datetime | None = None
    modified_after: dt.datetime | None = None
    modified_before: dt.datetime | None = None
    sort_by: str = "CreationTime"  # CreationTime | Name | Status
    ascending: bool = False


class JobRepository(Generic[SpecT]):
    """The jobs of one kind, in their table (see the subclasses)."""

    kind: str
    _row: type[JobRow]
    _not_found: Callable[[str], NotFoundError]

    def __init__(self, db: Database, parse: Callable[[Mapping[str, Any]], SpecT], label: str) -> None:
        self._db = db
        self._parse = parse
        self._label = label

    def create(self, job: Job[SpecT]) -> Job[SpecT]:
        with self._db.transaction() as session:
            if session.get(self._row, job.name) is not None:
                raise ConflictError(
                    f"{self._label} names must be unique within an account and region, and a {self._label.lower()} "
                    f"named {job.name!r} already exists ({job.arn})"
                )
            row = self._row(
                name=job.name, arn=job.arn, created_at=job.created, request=dict(job.spec.request)
            )
            _update_row(row, job)
            session.add(row)
        return job

    def get(self, name: str) -> Job[SpecT]:
        with self._db.transaction(readonly=True) as session:
            row = session.get(self._row, name)
            if row is None:
                raise self._not_found(name)
            return self._from_row(row)

    def get_many(self, names: Iterable[str]) -> dict[str, Job[SpecT]]:
        """The named jobs that exist, by name, in as few queries as the database allows."""
        wanted = list(dict.fromkeys(names))
        found: dict[str, Job[SpecT]] = {}
        with self._db.transaction(readonly=True) as session:
            for start in range(0, len(wanted), 500):  # under every database's limit on parameters
                stmt = sa.select(self._row).where(self._row.name.in_(wanted[start : start + 500]))
                found.update((row.name, self._from_row(row)) for row in session.scalars(stmt))
        return found

    def modify(
        self,
        name: str,
        change: Callable[[Job[SpecT]], Job[SpecT]],
        *,
        metric_points: Iterable[MetricPoint] = (),
    ) -> Job[SpecT]:
        """Read, change and write one job in one transaction (serialised with other writers).

        ``metric_points`` are stored in the same transaction, so a job's log offset and the points
        parsed up to it are recorded together or not at all.
        """
        with self._db.transaction() as session:
            row = session.get(self._row, name, with_for_update=True)
            if row is None:
                raise self._not_found(name)
            job = change(self._from_row(row))
            _update_row(row, job)
            session.add_all(
                MetricPointRow(
                    job_name=name, metric_name=p.name, step=p.step, value=p.value, timestamp=p.timestamp
                )
                for p in metric_points
            )
        return job

    def active(self) -> list[Job[SpecT]]:
        """Jobs not yet in a terminal state, oldest first (the scheduler's queue)."""
        stmt = (
            sa.select(self._row)
            .where(
                self._row.status.in_([TrainingJobStatus.IN_PROGRESS.value, TrainingJobStatus.STOPPING.value])
            )
            .order_by(self._row.created_at.asc())
        )
        with self._db.transaction(readonly=True) as session:
            return [self._from_row(row) for row in session.scalars(stmt)]

    def find(self, query: TrainingJobQuery, *, offset: int = 0, limit: int = 100) -> list[Job[SpecT]]:
        stmt = self._where(sa.select(self._row), query)
        row = self._row
        sort_column: Any = {"Name": row.name, "Status": row.status}.get(query.sort_by, row.created_at)
        order = sort_column.asc() if query.ascending else sort_column.desc()
        stmt = stmt.order_by(order, row.name.asc() if query.ascending else row.name.desc())
        stmt = stmt.offset(offset).limit(limit)
        with self._db.transaction(readonly=True) as session:
            return [self._from_row(r) for r in session.scalars(stmt)]

    def count(self, query: TrainingJobQuery) -> int:
        """How many jobs ``query`` matches."""
        stmt = self._where(sa.select(sa.func.count()).select_from(self._row), query)
        with self._db.transaction(readonly=True) as session:
            return int(session.scalar(stmt) or 0)

    def _where(self, stmt: Any, query: TrainingJobQuery) -> Any:
        row = self._row
        if query.name_contains:
            stmt = stmt.where(sa.func.lower(row.name).contains(query.name_contains.lower(), autoescape=True))
        if query.status is not None:
            stmt = stmt.where(row.status == query.status.value)
        for column, after, before in (
            (row.created_at, query.created_after, query.created_before),
            (row.last_modified, query.modified_after, query.modified_before),
        ):
            if after is not None:
                stmt = stmt.where(column > after)
            if before is not None:
                stmt = stmt.where(column < before)
        return stmt

    def _from_row(self, row: JobRow) -> Job[SpecT]:
        return Job(
            spec=self._parse(row.request),
            arn=row.arn,
            created=_aware(row.created_at),
            state=_state_from_json(row),
            run=JobRun.from_json(row.runtime),
        )


class TrainingJobRepository(JobRepository[TrainingJobSpec]):
    kind = "training"
    _row = TrainingJobRow
    _not_found = TrainingJobNotFound

    def __init__(self, db: Database) -> None:
        super().__init__(db, TrainingJobSpec.from_request, "Training job")

    def metric_series(self, job_name: str) -> dict[str, list[MetricPoint]]:
        stmt = (
            sa.select(MetricPointRow)
            .where(MetricPointRow.job_name == job_name)
            .order_by(MetricPointRow.metric_name, MetricPointRow.step)
        )
        series: dict[str, list[MetricPoint]] = {}
        with self._db.transaction(readonly=True) as session:
            for row in session.scalars(stmt):
                series.setdefault(row.metric_name, []).append(
                    MetricPoint(row.metric_name, row.value, _aware(row.timestamp), row.step)
                )
        return series


def _aware(value: dt.datetime) -> dt.datetime:
    # SQLite keeps no time zone; every time Shipyard stores is UTC.
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _state_to_json(state: JobState) -> dict[str, Any]:
    def iso(value: dt.datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "transitions": [
            {"status": t.status.value, "start": iso(t.start), "end": iso(t.end), "message": t.message}
            for t in state.transitions
        ],
        "failure_reason": state.failure_reason,
        "training_start": iso(state.started),
        "training_end": iso(state.ended),
        "scaled_down": state.scaled_down,
    }


def _state_from_json(row: JobRow) -> JobState:
    data = row.state

    def when(value: str | None) -> dt.datetime | None:
        return dt.datetime.fromisoformat(value) if value else None

    return JobState(
        status=TrainingJobStatus(row.status),
        secondary=SecondaryStatus(row.secondary_status),
        transitions=tuple(
            StatusTransition(
                SecondaryStatus(t["status"]),
                dt.datetime.fromisoformat(t["start"]),
                when(t["end"]),
                t.get("message", ""),
            )
            for t in data["transitions"]
        ),
        failure_reason=data.get("failure_reason"),
        started=when(data.get("training_start")),
        ended=when(data.get("training_end")),
        last_modified=_aware(row.last_modified),
        scaled_down=data.get("scaled_down"),
    )


def _update_row(row: JobRow, job: Job[Any]) -> None:
    row.status = job.state.status.value
    row.secondary_status = job.state.secondary.value
    row.state = _state_to_json(job.state)
    row.runtime = job.run.to_json()
    row.last_modified = job.state.last_modified or job.created


class ProcessingJobRepository(JobRepository[ProcessingJobSpec]):
    kind = "processing"
    _row = ProcessingJobRow
    _not_found = ProcessingJobNotFound

    def __init__(self, db: Database) -> None:
        super().__init__(db, ProcessingJobSpec.from_request, "Processing job")


class TransformJobRepository(JobRepository[TransformJobSpec]):
    kind = "transform"
    _row = TransformJobRow
    _not_found = TransformJobNotFound

    def __init__(self, db: Database) -> None:
        super().__init__(db, TransformJobSpec.from_request, "Transform job")
