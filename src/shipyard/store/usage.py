"""The usage ledger: intervals of priced resources in use, each recorded once."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal

import sqlalchemy as sa

from shipyard.store._db import Database
from shipyard.store._models import UsageRow


@dataclasses.dataclass(frozen=True)
class Usage:
    key: str
    resource_kind: str
    resource_name: str
    resource_arn: str
    job_kind: str
    instance_type: str
    instance_count: int
    usd_per_hour: Decimal
    started: dt.datetime
    last_seen: dt.datetime
    ended: dt.datetime | None = None

    def seconds(self, now: dt.datetime) -> float:
        return max(0.0, ((self.ended or now) - self.started).total_seconds()) * self.instance_count

    def cost(self, now: dt.datetime) -> Decimal:
        return (self.usd_per_hour * Decimal(self.seconds(now)) / Decimal(3600)).quantize(Decimal("0.000001"))


class UsageRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def open(self, usage: Usage) -> None:
        """Record the start of an interval; a second call with the same key changes nothing."""
        with self._db.transaction() as session:
            if session.get(UsageRow, usage.key) is None:
                session.add(
                    UsageRow(
                        key=usage.key,
                        resource_kind=usage.resource_kind,
                        resource_name=usage.resource_name,
                        resource_arn=usage.resource_arn,
                        job_kind=usage.job_kind,
                        instance_type=usage.instance_type,
                        instance_count=usage.instance_count,
                        usd_per_hour=str(usage.usd_per_hour),
                        started_at=usage.started,
                        last_seen=usage.started,
                        ended_at=None,
                    )
                )

    def close(self, key: str, at: dt.datetime) -> None:
        with self._db.transaction() as session:
            row = session.get(UsageRow, key, with_for_update=True)
            if row is not None and row.ended_at is None:
                row.ended_at = at
                row.last_seen = at

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

    def for_resource(self, resource_kind: str, resource_name: str) -> list[Usage]:
        stmt = (
            sa.select(UsageRow)
            .where(UsageRow.resource_kind == resource_kind, UsageRow.resource_name == resource_name)
            .order_by(UsageRow.started_at)
        )
        with self._db.transaction(readonly=True) as session:
            return [_load(row) for row in session.scalars(stmt)]


def _aware(value: dt.datetime | None) -> dt.datetime | None:
    if value is None:
        return None
    return value if value.tzinfo else value.replace(tzinfo=dt.UTC)


def _load(row: UsageRow) -> Usage:
    return Usage(
        key=row.key,
        resource_kind=row.resource_kind,
        resource_name=row.resource_name,
        resource_arn=row.resource_arn,
        job_kind=row.job_kind,
        instance_type=row.instance_type,
        instance_count=row.instance_count,
        usd_per_hour=Decimal(row.usd_per_hour),
        started=_aware(row.started_at),  # type: ignore[arg-type]
        last_seen=_aware(row.last_seen),  # type: ignore[arg-type]
        ended=_aware(row.ended_at),
    )
