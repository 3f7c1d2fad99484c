"""Training jobs and their metric series."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Iterable
from typing import Any

import sqlalchemy as sa

from shipyard.core.training import (
    MetricPoint,
    SecondaryStatus,
    StatusTransition,
    TrainingJob,
    TrainingJobSpec,
    TrainingJobState,
    TrainingJobStatus,
)
from shipyard.errors import ConflictError, NotFoundError
from shipyard.store._db import Database
from shipyard.store._models import MetricPointRow, TrainingJobRow


class TrainingJobNotFound(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Training job {name!r} does not exist")
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


class TrainingJobRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, job: TrainingJob) -> TrainingJob:
        with self._db.transaction() as session:
            if session.get(TrainingJobRow, job.name) is not None:
                raise ConflictError(
                    f"Training job names must be unique within an account and region, and a training job "
                    f"named {job.name!r} already exists ({job.arn})"
                )
            session.add(_to_row(job))
        return job

    def get(self, name: str) -> TrainingJob:
        with self._db.transaction(readonly=True) as session:
            row = session.get(TrainingJobRow, name)
            if row is None:
                raise TrainingJobNotFound(name)
            return _from_row(row)

    def get_many(self, names: Iterable[str]) -> dict[str, TrainingJob]:
        """The named jobs that exist, by name, in as few queries as the database allows."""
        wanted = list(dict.fromkeys(names))
        found: dict[str, TrainingJob] = {}
        with self._db.transaction(readonly=True) as session:
            for start in range(0, len(wanted), 500):  # under every database's limit on parameters
                stmt = sa.select(TrainingJobRow).where(TrainingJobRow.name.in_(wanted[start : start + 500]))
                found.update((row.name, _from_row(row)) for row in session.scalars(stmt))
        return found

    def modify(
        self,
        name: str,
        change: Callable[[TrainingJob], TrainingJob],
        *,
        metric_points: Iterable[MetricPoint] = (),
    ) -> TrainingJob:
        """Read, change and write one job in one transaction (serialised with other writers).

        ``metric_points`` are stored in the same transaction, so a job's log offset and the points
        parsed up to it are recorded together or not at all.
        """
        with self._db.transaction() as session:
            row = session.get(TrainingJobRow, name, with_for_update=True)
            if row is None:
                raise TrainingJobNotFound(name)
            job = change(_from_row(row))
            _update_row(row, job)
            session.add_all(
                MetricPointRow(
                    job_name=name, metric_name=p.name, step=p.step, value=p.value, timestamp=p.timestamp
                )
                for p in metric_points
            )
        return job

    def find(self, query: TrainingJobQuery, *, offset: int = 0, limit: int = 100) -> list[TrainingJob]:
        stmt = sa.select(TrainingJobRow)
        if query.name_contains:
            stmt = stmt.where(
                sa.func.lower(TrainingJobRow.name).contains(query.name_contains.lower(), autoescape=True)
            )
        if query.status is not None:
            stmt = stmt.where(TrainingJobRow.status == query.status.value)
        for column, after, before in (
            (TrainingJobRow.created_at, query.created_after, query.created_before),
            (TrainingJobRow.last_modified, query.modified_after, query.modified_before),
        ):
            if after is not None:
                stmt = stmt.where(column > after)
            if before is not None:
                stmt = stmt.where(column < before)
        sort_column: Any = {"Name": TrainingJobRow.name, "Status": TrainingJobRow.status}.get(
            query.sort_by, TrainingJobRow.created_at
        )
        order = sort_column.asc() if query.ascending else sort_column.desc()
        stmt = stmt.order_by(
            order, TrainingJobRow.name.asc() if query.ascending else TrainingJobRow.name.desc()
        )
        stmt = stmt.offset(offset).limit(limit)
        with self._db.transaction(readonly=True) as session:
            return [_from_row(row) for row in session.scalars(stmt)]

    def active(self) -> list[TrainingJob]:
        """Jobs not yet in a terminal state, oldest first (the scheduler's queue)."""
        stmt = (
            sa.select(TrainingJobRow)
            .where(
                TrainingJobRow.status.in_(
                    [TrainingJobStatus.IN_PROGRESS.value, TrainingJobStatus.STOPPING.value]
                )
            )
            .order_by(TrainingJobRow.created_at.asc())
        )
        with self._db.transaction(readonly=True) as session:
            return [_from_row(row) for row in session.scalars(stmt)]

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


def _state_to_json(state: TrainingJobState) -> dict[str, Any]:
    def iso(value: dt.datetime | None) -> str | None:
        return value.isoformat() if value else None

    return {
        "transitions": [
            {"status": t.status.value, "start": iso(t.start), "end": iso(t.end), "message": t.message}
            for t in state.transitions
        ],
        "failure_reason": state.failure_reason,
        "training_start": iso(state.training_start),
        "training_end": iso(state.training_end),
        "scaled_down": state.scaled_down,
    }


def _state_from_json(row: TrainingJobRow) -> TrainingJobState:
    data = row.state

    def when(value: str | None) -> dt.datetime | None:
        return dt.datetime.fromisoformat(value) if value else None

    return TrainingJobState(
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
        training_start=when(data.get("training_start")),
        training_end=when(data.get("training_end")),
        last_modified=_aware(row.last_modified),
        scaled_down=data.get("scaled_down"),
    )


def _to_row(job: TrainingJob) -> TrainingJobRow:
    row = TrainingJobRow(name=job.name, arn=job.arn, created_at=job.created, request=dict(job.spec.request))
    _update_row(row, job)
    return row


def _update_row(row: TrainingJobRow, job: TrainingJob) -> None:
    row.status = job.state.status.value
    row.secondary_status = job.state.secondary.value
    row.state = _state_to_json(job.state)
    row.runtime = dict(job.runtime)
    row.last_modified = job.state.last_modified or job.created


def _from_row(row: TrainingJobRow) -> TrainingJob:
    return TrainingJob(
        spec=TrainingJobSpec.from_request(row.request),
        arn=row.arn,
        created=_aware(row.created_at),
        state=_state_from_json(row),
        runtime=row.runtime,
    )
