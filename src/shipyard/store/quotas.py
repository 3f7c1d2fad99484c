"""Quotas an administrator set at run time, by subject (the config file's are not stored)."""

from __future__ import annotations

import datetime as dt

import sqlalchemy as sa

from shipyard.core.quotas import Limits, Subject
from shipyard.store._db import Database
from shipyard.store._models import QuotaRow


class QuotaRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def all(self) -> dict[Subject, Limits]:
        with self._db.transaction(readonly=True) as session:
            return {
                Subject.parse(row.subject): Limits.parse(row.limits, f"quota {row.subject}")
                for row in session.scalars(sa.select(QuotaRow))
            }

    def put(self, subject: Subject, limits: Limits, at: dt.datetime) -> None:
        with self._db.transaction() as session:
            row = session.get(QuotaRow, str(subject))
            if row is None:
                session.add(QuotaRow(subject=str(subject), limits=limits.to_json(), updated_at=at))
            else:
                row.limits = limits.to_json()
                row.updated_at = at

    def delete(self, subject: Subject) -> bool:
        """Forget ``subject``'s quota; whether there was one."""
        with self._db.transaction() as session:
            row = session.get(QuotaRow, str(subject))
            if row is None:
                return False
            session.delete(row)
            return True
