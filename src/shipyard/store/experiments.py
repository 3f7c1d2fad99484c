"""Experiments, trials and trial components, and the links between them (tables
``experiment_entities``, ``experiment_links``)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any

import sqlalchemy as sa

from shipyard.core.experiments import DuplicateEntity, Entity, EntityKind, EntityNotFound, SeriesPoint
from shipyard.store._db import Database
from shipyard.store._models import ExperimentEntityRow, ExperimentLinkRow, ExperimentMetricPointRow

EXPERIMENT_TRIAL = "experiment-trial"  # link kinds: an experiment's trial
TRIAL_COMPONENT = "trial-component"  # a trial's component
# Which links name an entity of each kind: (link kind, the side it is on).
_ROLES = {
    EntityKind.EXPERIMENT: {(EXPERIMENT_TRIAL, "source")},
    EntityKind.TRIAL: {(EXPERIMENT_TRIAL, "destination"), (TRIAL_COMPONENT, "source")},
    EntityKind.TRIAL_COMPONENT: {(TRIAL_COMPONENT, "destination")},
}


class ExperimentRepository:
    """The entities of every kind, each under its lower-cased name, and their links."""

    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, entity: Entity, *, links: Collection[tuple[str, str, str]] = ()) -> Entity:
        """Store ``entity`` and ``links`` ((kind, source key, destination key)) together.

        Raises:
            DuplicateEntity: An entity of its kind has its name, whatever the case.
        """
        with self._db.transaction() as session:
            if session.get(ExperimentEntityRow, (entity.kind.value, entity.key)) is not None:
                raise DuplicateEntity(entity.kind, entity.name)
            session.add(
                ExperimentEntityRow(
                    kind=entity.kind.value,
                    key=entity.key,
                    name=entity.name,
                    arn=entity.arn,
                    created_at=entity.created,
                    last_modified=entity.last_modified,
                    created_by=entity.created_by,
                    document=dict(entity.document),
                    metrics={k: dict(v) for k, v in entity.metrics.items()},
                )
            )
            for kind, source, destination in links:
                session.add(
                    ExperimentLinkRow(
                        kind=kind, source=source, destination=destination, created_at=entity.created
                    )
                )
        return entity

    def find_one(self, kind: EntityKind, name: str) -> Entity | None:
        with self._db.transaction(readonly=True) as session:
            row = session.get(ExperimentEntityRow, (kind.value, name.lower()))
            return _load(row) if row is not None else None

    def get_many(self, kind: EntityKind, keys: Collection[str]) -> dict[str, Entity]:
        """The entities of ``kind`` under ``keys`` that exist, by key."""
        wanted = sorted({k.lower() for k in keys})
        found: dict[str, Entity] = {}
        with self._db.transaction(readonly=True) as session:
            for start in range(0, len(wanted), 500):
                stmt = sa.select(ExperimentEntityRow).where(
                    ExperimentEntityRow.kind == kind.value,
                    ExperimentEntityRow.key.in_(wanted[start : start + 500]),
                )
                found.update((row.key, _load(row)) for row in session.scalars(stmt))
        return found

    def modify(
        self,
        kind: EntityKind,
        name: str,
        arn: str,
        change: Callable[[Entity], Entity],
        *,
        points: Sequence[tuple[str, SeriesPoint]] = (),
    ) -> Entity:
        """Read, change and write one entity in one transaction (serialised with other writers),
        adding ``points`` ((metric name, point)) to its metric series in the same one."""
        with self._db.transaction() as session:
            row = session.get(ExperimentEntityRow, (kind.value, name.lower()), with_for_update=True)
            if row is None:
                raise EntityNotFound(kind, arn)
            entity = change(_load(row))
            row.document = dict(entity.document)
            row.metrics = {k: dict(v) for k, v in entity.metrics.items()}
            row.last_modified = entity.last_modified
            for metric, point in points:
                session.add(
                    ExperimentMetricPointRow(
                        component=entity.key,
                        metric_name=metric,
                        step=point.step,
                        value=point.value,
                        timestamp=point.timestamp,
                    )
                )
        return entity

    def metric_series(self, name: str) -> Mapping[str, list[SeriesPoint]]:
        """The points an entity (a trial component) logged, by metric, in the order logged."""
        row = ExperimentMetricPointRow
        stmt = sa.select(row).where(row.component == name.lower()).order_by(row.metric_name, row.id)
        series: dict[str, list[SeriesPoint]] = {}
        with self._db.transaction(readonly=True) as session:
            for point in session.scalars(stmt):
                series.setdefault(point.metric_name, []).append(
                    SeriesPoint(point.value, _aware(point.timestamp), point.step)
                )
        return series

    def delete(
        self, kind: EntityKind, name: str, arn: str, *, unless: Callable[[list[tuple[str, str, str]]], None]
    ) -> Entity:
        """Delete one entity and the links from its experiment; ``unless`` is given the links that
        name it (kind, source, destination) first, and raises to refuse."""
        key = name.lower()
        with self._db.transaction() as session:
            row = session.get(ExperimentEntityRow, (kind.value, key), with_for_update=True)
            if row is None:
                raise EntityNotFound(kind, arn)
            candidates = session.scalars(
                sa.select(ExperimentLinkRow).where(
                    sa.or_(ExperimentLinkRow.source == key, ExperimentLinkRow.destination == key)
                )
            ).all()
            links = [
                link
                for link in candidates
                if any(link.kind == k and getattr(link, side) == key for k, side in _ROLES.get(kind, ()))
            ]
            unless([(link.kind, link.source, link.destination) for link in links])
            entity = _load(row)
            for link in links:
                session.delete(link)
            if kind is EntityKind.TRIAL_COMPONENT:
                session.execute(
                    sa.delete(ExperimentMetricPointRow).where(ExperimentMetricPointRow.component == key)
                )
            session.delete(row)
        return entity

    def find(
        self,
        kind: EntityKind,
        *,
        keys: Collection[str] | None = None,
        created_after: dt.datetime | None = None,
        created_before: dt.datetime | None = None,
        sort_by: str = "CreationTime",
        ascending: bool = False,
        offset: int = 0,
        limit: int = 100,
    ) -> list[Entity]:
        """Entities of ``kind`` (among ``keys`` when given), sorted by CreationTime or Name."""
        row = ExperimentEntityRow
        stmt = sa.select(row).where(row.kind == kind.value)
        if keys is not None:
            stmt = stmt.where(row.key.in_(sorted(keys)))
        if created_after is not None:
            stmt = stmt.where(row.created_at > created_after)
        if created_before is not None:
            stmt = stmt.where(row.created_at < created_before)
        column: Any = row.key if sort_by == "Name" else row.created_at
        stmt = stmt.order_by(column.asc() if ascending else column.desc(), row.key.asc())
        with self._db.transaction(readonly=True) as session:
            return [_load(r) for r in session.scalars(stmt.offset(offset).limit(limit))]

    # -- links ------------------------------------------------------------------------------------
    def link(self, kind: str, source: str, destination: str, now: dt.datetime) -> bool:
        """Add a link; False when it was there already."""
        with self._db.transaction() as session:
            if session.get(ExperimentLinkRow, (kind, source, destination)) is not None:
                return False
            session.add(ExperimentLinkRow(kind=kind, source=source, destination=destination, created_at=now))
        return True

    def unlink(self, kind: str, source: str, destination: str) -> bool:
        """Remove a link; False when there was none."""
        with self._db.transaction() as session:
            row = session.get(ExperimentLinkRow, (kind, source, destination), with_for_update=True)
            if row is None:
                return False
            session.delete(row)
        return True

    def destinations(self, kind: str, sources: Collection[str]) -> dict[str, list[str]]:
        """The destinations linked from each of ``sources``."""
        return self._follow(kind, sources, forward=True)

    def sources(self, kind: str, destinations: Collection[str]) -> dict[str, list[str]]:
        """The sources linked to each of ``destinations``."""
        return self._follow(kind, destinations, forward=False)

    def _follow(self, kind: str, keys: Collection[str], *, forward: bool) -> dict[str, list[str]]:
        wanted = sorted({k.lower() for k in keys})
        found: dict[str, list[str]] = {k: [] for k in wanted}
        near, far = (
            (ExperimentLinkRow.source, ExperimentLinkRow.destination)
            if forward
            else (ExperimentLinkRow.destination, ExperimentLinkRow.source)
        )
        with self._db.transaction(readonly=True) as session:
            for start in range(0, len(wanted), 500):
                stmt = (
                    sa.select(near, far)
                    .where(ExperimentLinkRow.kind == kind, near.in_(wanted[start : start + 500]))
                    .order_by(ExperimentLinkRow.created_at, far)
                )
                for key, other in session.execute(stmt):
                    found[key].append(other)
        return found


def _aware(value: dt.datetime) -> dt.datetime:
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _load(row: ExperimentEntityRow) -> Entity:
    return Entity(
        kind=EntityKind(row.kind),
        name=row.name,
        arn=row.arn,
        created=_aware(row.created_at),
        last_modified=_aware(row.last_modified),
        document=row.document,
        metrics=row.metrics,
        created_by=row.created_by,
    )
