"""Hyperparameter tuning jobs. Their trials are training jobs (store/jobs.py)."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa

from shipyard.core.tuning import Trial, TuningJob, TuningJobSpec, TuningJobStatus
from shipyard.errors import ConflictError, NotFoundError
from shipyard.store._db import Database
from shipyard.store._models import TuningJobRow


class TuningJobNotFound(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Hyperparameter tuning job {name!r} does not exist")


class TuningJobRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def ensure_absent(self, name: str) -> None:
        """ConflictError if a tuning job of that name exists."""
        with self._db.transaction(readonly=True) as session:
            row = session.get(TuningJobRow, name)
            if row is not None:
                raise ConflictError(f"A hyperparameter tuning job named {name!r} already exists ({row.arn})")

    def create(self, job: TuningJob) -> TuningJob:
        with self._db.transaction() as session:
            if session.get(TuningJobRow, job.name) is not None:
                raise ConflictError(
                    f"A hyperparameter tuning job named {job.name!r} already exists ({job.arn})"
                )
            row = TuningJobRow(
                name=job.name, arn=job.arn, created_at=job.created, request=dict(job.spec.request)
            )
            _update(row, job)
            session.add(row)
        return job

    def get(self, name: str) -> TuningJob:
        with self._db.transaction(readonly=True) as session:
            row = session.get(TuningJobRow, name)
            if row is None:
                raise TuningJobNotFound(name)
            return _load(row)

    def modify(self, name: str, change: Callable[[TuningJob], TuningJob]) -> TuningJob:
        with self._db.transaction() as session:
            row = session.get(TuningJobRow, name, with_for_update=True)
            if row is None:
                raise TuningJobNotFound(name)
            job = change(_load(row))
            _update(row, job)
        return job

    def find(
        self,
        *,
        name_contains: str | None = None,
        status: str | None = None,
        ascending: bool = False,
        sort_by: str = "CreationTime",
        offset: int = 0,
        limit: int = 100,
    ) -> list[TuningJob]:
        stmt = sa.select(TuningJobRow)
        if name_contains:
            stmt = stmt.where(
                sa.func.lower(TuningJobRow.name).contains(name_contains.lower(), autoescape=True)
            )
        if status:
            stmt = stmt.where(TuningJobRow.status == status)
        column: Any = {"Name": TuningJobRow.name, "Status": TuningJobRow.status}.get(
            sort_by, TuningJobRow.created_at
        )
        stmt = stmt.order_by(column.asc() if ascending else column.desc()).offset(offset).limit(limit)
        with self._db.transaction(readonly=True) as session:
            return [_load(row) for row in session.scalars(stmt)]

    def count(self, *, name_contains: str | None = None, status: str | None = None) -> int:
        stmt = sa.select(sa.func.count()).select_from(TuningJobRow)
        if name_contains:
            stmt = stmt.where(
                sa.func.lower(TuningJobRow.name).contains(name_contains.lower(), autoescape=True)
            )
        if status:
            stmt = stmt.where(TuningJobRow.status == status)
        with self._db.transaction(readonly=True) as session:
            return int(session.scalar(stmt) or 0)

    def active(self) -> list[TuningJob]:
        stmt = (
            sa.select(TuningJobRow)
            .where(
                TuningJobRow.status.in_([TuningJobStatus.IN_PROGRESS.value, TuningJobStatus.STOPPING.value])
            )
            .order_by(TuningJobRow.created_at.asc())
        )
        with self._db.transaction(readonly=True) as session:
            return [_load(row) for row in session.scalars(stmt)]


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _update(row: TuningJobRow, job: TuningJob) -> None:
    row.status = job.status.value
    row.last_modified = job.last_modified or job.created
    row.state = {
        "trials": [dataclasses.asdict(t) for t in job.trials],
        "failure_reason": job.failure_reason,
        "end_time": job.end_time.isoformat() if job.end_time else None,
        "completion": job.completion,
        "owner": job.owner,
    }


def _load(row: TuningJobRow) -> TuningJob:
    state = row.state
    end = state.get("end_time")
    return TuningJob(
        spec=TuningJobSpec.from_request(row.request),
        arn=row.arn,
        created=_aware(row.created_at),
        status=TuningJobStatus(row.status),
        trials=tuple(
            Trial(t["number"], t["job"], t["hyperparameters"], t.get("definition"))
            for t in state.get("trials", [])
        ),
        failure_reason=state.get("failure_reason"),
        end_time=dt.datetime.fromisoformat(end) if end else None,
        last_modified=_aware(row.last_modified),
        completion=state.get("completion"),
        owner=state.get("owner"),
    )
