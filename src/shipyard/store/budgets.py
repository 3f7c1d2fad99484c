"""Budgets and the alerts they raise."""

from __future__ import annotations

import dataclasses
import datetime as dt
from collections.abc import Collection
from decimal import Decimal

import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from shipyard.core.budgets import Budget
from shipyard.errors import ConflictError, NotFoundError
from shipyard.store._db import Database
from shipyard.store._models import BudgetEventRow, BudgetRow


@dataclasses.dataclass(frozen=True)
class BudgetEvent:
    """An alert: ``kind`` is "threshold", "denied" or "stopped"."""

    id: int
    budget: str
    kind: str
    spend_usd: Decimal
    message: str
    created: dt.datetime

    def to_json(self) -> dict[str, object]:
        return {
            "id": self.id,
            "budget": self.budget,
            "kind": self.kind,
            "spend_usd": str(self.spend_usd),
            "message": self.message,
            "created": self.created.isoformat(),
        }


class BudgetNotFound(NotFoundError):
    def __init__(self, name: str) -> None:
        super().__init__(f"Budget {name!r} does not exist")


class BudgetRepository:
    def __init__(self, db: Database) -> None:
        self._db = db

    def create(self, budget: Budget) -> None:
        with self._db.transaction() as session:
            if session.get(BudgetRow, budget.name) is not None:
                raise ConflictError(f"A budget named {budget.name!r} already exists")
            session.add(BudgetRow(name=budget.name, definition=budget.to_json(), created_at=budget.created))

    def get(self, name: str) -> Budget:
        with self._db.transaction(readonly=True) as session:
            row = session.get(BudgetRow, name)
            if row is None:
                raise BudgetNotFound(name)
            return Budget.from_json(row.definition)

    def all(self) -> list[Budget]:
        with self._db.transaction(readonly=True) as session:
            return [
                Budget.from_json(r.definition)
                for r in session.scalars(sa.select(BudgetRow).order_by(BudgetRow.name))
            ]

    def delete(self, name: str) -> None:
        with self._db.transaction() as session:
            row = session.get(BudgetRow, name)
            if row is None:
                raise BudgetNotFound(name)
            session.delete(row)

    def record(
        self, budget: str, kind: str, dedupe: str, spend: Decimal, message: str, at: dt.datetime
    ) -> bool:
        """Record an event once (by ``dedupe``); False when it was recorded before."""
        try:
            with self._db.transaction() as session:
                if (
                    session.scalar(sa.select(BudgetEventRow.id).where(BudgetEventRow.dedupe == dedupe))
                    is not None
                ):
                    return False
                session.add(
                    BudgetEventRow(
                        budget=budget,
                        kind=kind,
                        dedupe=dedupe,
                        spend_usd=str(spend),
                        message=message,
                        created_at=at,
                    )
                )
        except IntegrityError:  # recorded meanwhile
            return False
        return True

    def events(
        self, budget: str | None = None, limit: int = 100, *, among: Collection[str] | None = None
    ) -> list[BudgetEvent]:
        """Alerts, newest first: of ``budget``, of the budgets named in ``among``, or of all."""
        stmt = sa.select(BudgetEventRow).order_by(BudgetEventRow.created_at.desc(), BudgetEventRow.id.desc())
        if budget is not None:
            stmt = stmt.where(BudgetEventRow.budget == budget)
        if among is not None:
            stmt = stmt.where(BudgetEventRow.budget.in_(list(among)))
        with self._db.transaction(readonly=True) as session:
            return [
                BudgetEvent(
                    r.id,
                    r.budget,
                    r.kind,
                    Decimal(r.spend_usd),
                    r.message,
                    r.created_at if r.created_at.tzinfo else r.created_at.replace(tzinfo=dt.UTC),
                )
                for r in session.scalars(stmt.limit(limit))
            ]
