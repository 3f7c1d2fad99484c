"""The usage ledger: intervals of priced resources in use, each recorded once (by its key)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from decimal import Decimal
from typing import Any

import sqlalchemy as sa

from shipyard.core.costs import Interval
from shipyard.store._db import Database
from shipyard.store._models import UsageRow


class UsageRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def open(self, interval: Interval) -> None:
        """Record the start of an interval; a second call with the same key changes nothing."""
        with self._db.transaction() as session:
            if session.get(UsageRow, interval.key) is None:
                session.add(_row(interval))

    def close(self, key: str, at: dt.datetime, *, started: dt.datetime | None = None) -> None:
        """End an open interval at ``at`` (and, given ``started``, make that its start: a job's
        billed time is known exactly only when it ends)."""
        with self._db.transaction() as session:
            row = session.get(UsageRow, key, with_for_update=True)
            if row is not None and row.ended_at is None:
                begin = started or _aware(row.started_at)
                assert begin is not None
                row.started_at = begin
                row.ended_at = row.last_seen = max(at, begin)

    def settle(self, interval: Interval, started: dt.datetime, ended: dt.datetime) -> Interval:
        """Make ``interval`` exactly [started, ended): one transaction, whether it was opened
        before (its prices and tags stay those of its start) or not."""
        with self._db.transaction() as session:
            row = session.get(UsageRow, interval.key, with_for_update=True)
            if row is None:
                row = _row(interval)
                session.add(row)
            row.started_at = started
            row.ended_at = row.last_seen = max(started, ended)
            session.flush()
            return _load(row)

    def settle_opened(self, key: str, started: dt.datetime, ended: dt.datetime) -> Interval | None:
        """Make the interval ``key`` exactly [started, ended) if it was opened (its prices and
        tags stay those of its start); None, changing nothing, if there is none."""
        with self._db.transaction() as session:
            row = session.get(UsageRow, key, with_for_update=True)
            if row is None:
                return None
            row.started_at = started
            row.ended_at = row.last_seen = max(started, ended)
            session.flush()
            return _load(row)

    def rebill(
        self, key: str, usd_per_hour: Decimal, started: dt.datetime, ended: dt.datetime
    ) -> Interval | None:
        """Make an ended interval [started, ended) at the site's ``usd_per_hour`` (what a
        cluster billed for it, known only after it ended); None when there is no such ended
        interval (nothing changes)."""
        with self._db.transaction() as session:
            row = session.get(UsageRow, key, with_for_update=True)
            if row is None or row.ended_at is None:
                return None
            row.usd_per_hour = str(usd_per_hour)
            row.started_at = started
            row.ended_at = row.last_seen = max(started, ended)
            session.flush()
            return _load(row)

    def get(self, key: str) -> Interval | None:
        with self._db.transaction(readonly=True) as session:
            row = session.get(UsageRow, key)
            return _load(row) if row is not None else None

    def seen(self, keys: list[str], at: dt.datetime) -> None:
        """Mark open intervals as still in use at ``at``."""
        if not keys:
            return
        with self._db.transaction() as session:
            session.execute(
                sa.update(UsageRow)
                .where(UsageRow.key.in_(keys), UsageRow.ended_at.is_(None))
                .values(last_seen=at)
            )

    def close_abandoned(self, resource_kind: str) -> int:
        """Close the open intervals a previous server left (it died): at the last time they were seen."""
        with self._db.transaction() as session:
            rows = session.scalars(
                sa.select(UsageRow).where(
                    UsageRow.resource_kind == resource_kind, UsageRow.ended_at.is_(None)
                )
            ).all()
            for row in rows:
                row.ended_at = row.last_seen
            return len(rows)

    def retag(self, arn: str, tags: Mapping[str, str]) -> None:
        """A resource's tags changed: its intervals, past and present, are allocated by the new ones."""
        with self._db.transaction(readonly=True) as session:  # a new resource has none: no write
            if session.scalar(sa.select(UsageRow.key).where(UsageRow.resource_arn == arn).limit(1)) is None:
                return
        with self._db.transaction() as session:
            session.execute(sa.update(UsageRow).where(UsageRow.resource_arn == arn).values(tags=dict(tags)))

    def for_resource(self, resource_kind: str, resource_name: str) -> list[Interval]:
        return self._select(
            sa.select(UsageRow)
            .where(UsageRow.resource_kind == resource_kind, UsageRow.resource_name == resource_name)
            .order_by(UsageRow.started_at)
        )

    def open_intervals(self, resource_kind: str | None = None) -> list[Interval]:
        stmt = sa.select(UsageRow).where(UsageRow.ended_at.is_(None))
        if resource_kind is not None:
            stmt = stmt.where(UsageRow.resource_kind == resource_kind)
        return self._select(stmt)

    def overlapping(self, start: dt.datetime, end: dt.datetime) -> list[Interval]:
        """Intervals with any part in [start, end) (open ones included)."""
        return self._select(
            sa.select(UsageRow)
            .where(UsageRow.started_at < end, sa.or_(UsageRow.ended_at.is_(None), UsageRow.ended_at > start))
            .order_by(UsageRow.started_at)
        )

    def _select(self, stmt: Any) -> list[Interval]:
        with self._db.transaction(readonly=True) as session:
            return [_load(row) for row in session.scalars(stmt)]


def _row(interval: Interval) -> UsageRow:
    return UsageRow(
        key=interval.key,
        resource_kind=interval.kind,
        resource_name=interval.name,
        resource_arn=interval.arn,
        job_kind=interval.kind,
        instance_type=interval.instance_type,
        instance_count=interval.count,
        usd_per_hour=str(interval.usd_per_hour),
        sagemaker_usd_per_hour=str(interval.sagemaker_usd_per_hour),
        started_at=interval.started,
        last_seen=interval.started,
        ended_at=None,
        owner=interval.owner,
        parent=interval.parent,
        tags=dict(interval.tags),
        gpus=interval.gpus,
    )


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _load(row: UsageRow) -> Interval:
    return Interval(
        key=row.key,
        kind=row.resource_kind,
        name=row.resource_name,
        arn=row.resource_arn,
        instance_type=row.instance_type,
        count=row.instance_count,
        usd_per_hour=Decimal(row.usd_per_hour),
        sagemaker_usd_per_hour=Decimal(row.sagemaker_usd_per_hour or row.usd_per_hour),
        started=_aware(row.started_at),  # type: ignore[arg-type]
        last_seen=_aware(row.last_seen),  # type: ignore[arg-type]
        ended=_aware(row.ended_at),
        parent=row.parent,
        owner=row.owner,
        tags=dict(row.tags or {}),
        gpus=row.gpus,
    )
