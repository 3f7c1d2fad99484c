"""Notebook instances (table ``notebook_instances``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

import sqlalchemy as sa

from shipyard.core.notebooks import NotebookInstance, NotebookStatus
from shipyard.errors import ConflictError, NotFoundError, ValidationError
from shipyard.store._db import Database
from shipyard.store._models import NotebookInstanceRow


class NotebookInstanceNotFound(ValidationError, NotFoundError):
    """SageMaker answers a missing notebook instance with ValidationException "RecordNotFound"."""

    def __init__(self, name: str) -> None:
        super().__init__("RecordNotFound", field="NotebookInstanceName", value=name)


class DuplicateNotebookInstance(ValidationError, ConflictError):
    """SageMaker's "Cannot create a duplicate Notebook Instance" ValidationException."""

    def __init__(self, arn: str, name: str) -> None:
        super().__init__(
            f"Cannot create a duplicate Notebook Instance ({arn})", field="NotebookInstanceName", value=name
        )


class NotebookRepository:
    """The notebook instances, by name."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, notebook: NotebookInstance) -> NotebookInstance:
        with self._db.transaction() as session:
            if session.get(NotebookInstanceRow, notebook.name) is not None:
                raise DuplicateNotebookInstance(notebook.arn, notebook.name)
            session.add(_row(notebook))
        return notebook

    def get(self, name: str) -> NotebookInstance:
        with self._db.transaction(readonly=True) as session:
            row = session.get(NotebookInstanceRow, name)
            if row is None:
                raise NotebookInstanceNotFound(name)
            return _load(row)

    def all(self) -> list[NotebookInstance]:
        with self._db.transaction(readonly=True) as session:
            rows = session.scalars(
                sa.select(NotebookInstanceRow).order_by(
                    NotebookInstanceRow.created_at, NotebookInstanceRow.name
                )
            ).all()
            return [_load(row) for row in rows]

    def modify(self, name: str, change: Callable[[NotebookInstance], NotebookInstance]) -> NotebookInstance:
        """Apply ``change`` to the stored notebook in one transaction (``change`` may raise to
        refuse it: nothing is written then)."""
        with self._db.transaction() as session:
            row = session.get(NotebookInstanceRow, name, with_for_update=True)
            if row is None:
                raise NotebookInstanceNotFound(name)
            changed = change(_load(row))
            fresh = _row(changed)
            for column in NotebookInstanceRow.__table__.columns:
                setattr(row, column.key, getattr(fresh, column.key))
            return changed

    def delete(self, name: str) -> None:
        with self._db.transaction() as session:
            row = session.get(NotebookInstanceRow, name)
            if row is not None:
                session.delete(row)


def _row(notebook: NotebookInstance) -> NotebookInstanceRow:
    return NotebookInstanceRow(
        name=notebook.name,
        arn=notebook.arn,
        region=notebook.region,
        status=notebook.status.value,
        request=dict(notebook.request),
        failure_reason=notebook.failure_reason,
        owner=notebook.owner,
        url=notebook.url,
        created_at=notebook.created,
        last_modified=notebook.last_modified,
        in_service_since=notebook.in_service_since,
    )


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)


def _load(row: NotebookInstanceRow) -> NotebookInstance:
    created = _aware(row.created_at)
    modified = _aware(row.last_modified)
    assert created is not None and modified is not None
    return NotebookInstance(
        name=row.name,
        arn=row.arn,
        region=row.region,
        status=NotebookStatus(row.status),
        request=dict(row.request),
        created=created,
        last_modified=modified,
        failure_reason=row.failure_reason,
        owner=row.owner,
        url=row.url,
        in_service_since=_aware(row.in_service_since),
    )


__all__ = ["DuplicateNotebookInstance", "NotebookInstanceNotFound", "NotebookRepository"]
