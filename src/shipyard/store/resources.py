"""Resources kept as a request and a state: models, endpoint configs, endpoints."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Callable, Mapping
from typing import Any

import sqlalchemy as sa

from shipyard.errors import ConflictError, NotFoundError, ValidationError
from shipyard.store._db import Database
from shipyard.store._models import ResourceRow


class MissingResource(ValidationError, NotFoundError):
    """SageMaker answers a missing model, endpoint config or endpoint with a ValidationException
    ("Could not find ..."); inside Shipyard it is a NotFoundError like any other."""


class DuplicateResource(ValidationError, ConflictError):
    """SageMaker's "Cannot create already existing ..." ValidationException (the sagemaker SDK
    recognises it, e.g. to reuse a model it created before)."""


@dataclasses.dataclass(frozen=True)
class Resource:
    """One stored resource. ``request`` is its validated create request; ``state`` what the
    platform keeps of it (status details, variants, instances)."""

    kind: str
    name: str
    arn: str
    created: dt.datetime
    request: Mapping[str, Any]
    state: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    status: str | None = None
    last_modified: dt.datetime | None = None


class ResourceRepository:
    """The resources of one kind. ``label`` names the kind in messages ("Endpoint")."""

    def __init__(self, db: Database, kind: str, label: str) -> None:
        self._db = db
        self.kind = kind
        self._label = label

    @property
    def db(self) -> Database:
        """The database it keeps its rows in (a repository of another kind may share it)."""
        return self._db

    def _missing(self, name: str) -> NotFoundError:
        return MissingResource(
            f'Could not find {self._label.lower()} "{name}".', field=self._label, value=name
        )

    def create(self, resource: Resource) -> Resource:
        with self._db.transaction() as session:
            if session.get(ResourceRow, (self.kind, resource.name)) is not None:
                raise DuplicateResource(
                    f'Cannot create already existing {self._label.lower()} "{resource.arn}".',
                    field=self._label,
                    value=resource.name,
                )
            session.add(
                ResourceRow(
                    kind=self.kind,
                    name=resource.name,
                    arn=resource.arn,
                    created_at=resource.created,
                    status=resource.status,
                    request=dict(resource.request),
                    state=dict(resource.state),
                    last_modified=resource.last_modified or resource.created,
                )
            )
        return resource

    def get(self, name: str) -> Resource:
        with self._db.transaction(readonly=True) as session:
            row = session.get(ResourceRow, (self.kind, name))
            if row is None:
                raise self._missing(name)
            return _load(row)

    def modify(self, name: str, change: Callable[[Resource], Resource]) -> Resource:
        with self._db.transaction() as session:
            row = session.get(ResourceRow, (self.kind, name), with_for_update=True)
            if row is None:
                raise self._missing(name)
            resource = change(_load(row))
            row.status = resource.status
            row.state = dict(resource.state)
            row.request = dict(resource.request)
            row.last_modified = resource.last_modified or row.last_modified
        return resource

    def delete(self, name: str) -> None:
        with self._db.transaction() as session:
            row = session.get(ResourceRow, (self.kind, name), with_for_update=True)
            if row is None:
                raise self._missing(name)
            session.delete(row)

    def find(
        self,
        *,
        name_contains: str | None = None,
        status: str | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        sort_by: str = "CreationTime",
        ascending: bool = False,
        offset: int = 0,
        limit: int = 100,
    ) -> list[Resource]:
        stmt = sa.select(ResourceRow).where(ResourceRow.kind == self.kind)
        if name_contains:
            stmt = stmt.where(
                sa.func.lower(ResourceRow.name).contains(name_contains.lower(), autoescape=True)
            )
        if status:
            stmt = stmt.where(ResourceRow.status == status)
        if created_after is not None:
            stmt = stmt.where(ResourceRow.created_at > created_after)
        if created_before is not None:
            stmt = stmt.where(ResourceRow.created_at < created_before)
        column: Any = {"Name": ResourceRow.name, "Status": ResourceRow.status}.get(
            sort_by, ResourceRow.created_at
        )
        stmt = stmt.order_by(column.asc() if ascending else column.desc(), ResourceRow.name.asc())
        with self._db.transaction(readonly=True) as session:
            return [_load(row) for row in session.scalars(stmt.offset(offset).limit(limit))]


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _load(row: ResourceRow) -> Resource:
    return Resource(
        kind=row.kind,
        name=row.name,
        arn=row.arn,
        created=_aware(row.created_at),
        request=row.request,
        state=row.state,
        status=row.status,
        last_modified=_aware(row.last_modified),
    )
