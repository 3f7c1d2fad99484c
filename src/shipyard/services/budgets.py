"""Budgets: spend against limits, alerts at thresholds, launches denied, work stopped.

See :mod:`shipyard.core.budgets` for what a budget means. Launches are checked under one lock
(:meth:`BudgetService.launch`), and a launch's job exists before the lock is let go, so the next
launch counts it as committed: two launches at once cannot both slip under a limit. (One server
serves a store; the lock is the server's.)
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import subprocess
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from decimal import Decimal
from typing import Any

import httpx

from shipyard.core.budgets import Budget
from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.costs import CENT, money
from shipyard.core.estimates import Estimate
from shipyard.errors import LimitExceededError
from shipyard.services._guard import LaunchGuard, Reckon, no_guard, request_tags
from shipyard.services.costs import CostService
from shipyard.store.budgets import BudgetEvent, BudgetRepository

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Commitment:
    """Work under way that may still cost ``remaining_usd`` (its worst case minus its cost so far).
    ``stop`` stops it (None for work a budget does not stop, such as a tuning job's future trials)."""

    kind: str
    name: str
    tags: Mapping[str, str]
    remaining_usd: Decimal
    stop: Callable[[], None] | None = None


class BudgetService:
    """Args:
    commitments: The work under way (jobs, tuning jobs) with what it may still cost.
    alert_command: The site's command for every alert (the server's setting), run with the
        alert in ``SHIPYARD_ALERT`` (JSON), ``SHIPYARD_BUDGET`` and ``SHIPYARD_SPEND_USD``.
    """

    def __init__(
        self,
        repository: BudgetRepository,
        costs: CostService,
        commitments: Callable[[], list[Commitment]],
        *,
        alert_command: str | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.repository = repository
        self._clock = clock
        self._costs = costs
        self._commitments = commitments
        self._alert_command = alert_command
        self._launch_lock = threading.Lock()

    # -- budgets ------------------------------------------------------------------------------------
    def create(self, body: Mapping[str, Any]) -> Budget:
        budget = Budget.from_request(body, self._clock.now())
        self.repository.create(budget)
        return budget

    def status(self, budget: Budget, now: dt.datetime | None = None) -> dict[str, Any]:
        """The budget with its spend this period, what running work has committed, and how close
        they are to the limit."""
        now = now or self._clock.now()
        spent = self.spend(budget, now)
        committed = sum(
            (c.remaining_usd for c in self._commitments() if budget.covers(c.tags)), Decimal(0)
        ).quantize(CENT)
        return {
            **budget.to_json(),
            "period_start": budget.period_start(now).isoformat(),
            "spend_usd": str(spent),
            "committed_usd": str(committed),
            "percent": float(round(spent / budget.limit_usd * 100, 2)),
        }

    def spend(self, budget: Budget, now: dt.datetime) -> Decimal:
        start = budget.period_start(now)
        return sum(
            (
                i.cost(start, now, now=now)
                for i in self._costs.usage.overlapping(start, now)
                if budget.covers(i.tags)
            ),
            Decimal(0),
        ).quantize(CENT)

    def events(self, budget: str | None = None, limit: int = 100) -> list[BudgetEvent]:
        if budget is not None:
            self.repository.get(budget)
        return self.repository.events(budget, limit)

    # -- launches -----------------------------------------------------------------------------------
    def would_deny(self, estimate: Estimate, tags: Mapping[str, str]) -> list[str]:
        """The ``deny`` budgets that would refuse a launch of ``estimate`` with ``tags`` now."""
        now = self._clock.now()
        return [b.name for b in self.repository.all() if self._denies(b, estimate, tags, now) is not None]

    def _denies(
        self, budget: Budget, estimate: Estimate, tags: Mapping[str, str], now: dt.datetime
    ) -> tuple[Decimal, Decimal] | None:
        """(spent, committed) when ``budget`` refuses the launch, else None."""
        if "deny" not in budget.actions or not budget.covers(tags):
            return None
        spent = self.spend(budget, now)
        committed = sum(
            (c.remaining_usd for c in self._commitments() if budget.covers(c.tags)), Decimal(0)
        ).quantize(CENT)
        return (spent, committed) if spent + committed + estimate.usd > budget.limit_usd else None

    @contextlib.contextmanager
    def launch(self, kind: str, name: str, estimate: Estimate, tags: Mapping[str, str]) -> Iterator[None]:
        """Around the creation of a launch: LimitExceededError (ResourceLimitExceeded) when a
        ``deny`` budget covering ``tags`` cannot take ``estimate`` on top of what is spent and
        committed; else the creation runs while no other launch is checked."""
        with self._launch_lock:
            now = self._clock.now()
            for budget in self.repository.all():
                refused = self._denies(budget, estimate, tags, now)
                if refused is not None:
                    spent, committed = refused
                    message = (
                        f"Budget {budget.name!r} ({budget.period}, limit {money(budget.limit_usd)}) denies "
                        f"{kind} {name!r}: {money(spent)} spent and {money(committed)} committed by running "
                        f"work, and it may cost up to {money(estimate.usd)} ({estimate.basis})"
                    )
                    self.repository.record(
                        budget.name, "denied", f"denied/{uuid.uuid4()}", spent, message, now
                    )
                    raise LimitExceededError(message)
            yield

    def guard(
        self,
        kind: str,
        name: str,
        reckon: Reckon,
        request: Mapping[str, Any],
        tags: Mapping[str, str],
    ) -> contextlib.AbstractContextManager[None]:
        """:meth:`launch` with the estimate reckoned from a create request; a request too broken
        to reckon is let through to its creation, which names what is wrong."""
        try:
            estimate = reckon(request, self._costs.price)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            return contextlib.nullcontext()
        return self.launch(kind, name, estimate, tags)

    # -- the periodic check -------------------------------------------------------------------------
    def tick(self) -> None:
        """Thresholds crossed raise alerts (once a period each); ``stop`` budgets at their limit
        stop the running work they cover."""
        now = self._clock.now()
        for budget in self.repository.all():
            spent = self.spend(budget, now)
            period = budget.period_start(now).isoformat()
            for threshold in budget.thresholds:
                if spent * 100 >= budget.limit_usd * threshold:
                    message = (
                        f"Budget {budget.name!r} has reached {threshold}% of its {budget.period} limit: "
                        f"{money(spent)} of {money(budget.limit_usd)}"
                    )
                    if self.repository.record(
                        budget.name,
                        "threshold",
                        f"threshold/{budget.name}/{period}/{threshold}",
                        spent,
                        message,
                        now,
                    ):
                        log.warning(message)
                        self._notify(
                            budget, {"kind": "threshold", "threshold": threshold, "message": message}, spent
                        )
            if "stop" in budget.actions and spent >= budget.limit_usd:
                for work in self._commitments():
                    if work.stop is None or not budget.covers(work.tags):
                        continue
                    message = (
                        f"Budget {budget.name!r} stopped {work.kind} {work.name!r}: {money(spent)} spent of "
                        f"{money(budget.limit_usd)}"
                    )
                    if self.repository.record(
                        budget.name,
                        "stopped",
                        f"stopped/{budget.name}/{period}/{work.kind}/{work.name}",
                        spent,
                        message,
                        now,
                    ):
                        log.warning(message)
                        with contextlib.suppress(Exception):  # it may have ended meanwhile
                            work.stop()
                        self._notify(
                            budget, {"kind": "stopped", "work": work.name, "message": message}, spent
                        )

    def _notify(self, budget: Budget, event: dict[str, Any], spent: Decimal) -> None:
        """POST the alert as JSON to the budget's webhook; run the site's alert command."""
        payload = {
            **event,
            "budget": budget.name,
            "spend_usd": str(spent),
            "limit_usd": str(budget.limit_usd),
        }
        if budget.notify:
            try:
                httpx.post(budget.notify, json=payload, timeout=5)
            except httpx.HTTPError as exc:  # an alert hook that fails must not stop the checks
                log.warning("Budget %s: webhook %s failed: %s", budget.name, budget.notify, exc)
        if self._alert_command:
            env = {
                **os.environ,
                "SHIPYARD_ALERT": json.dumps(payload),
                "SHIPYARD_BUDGET": budget.name,
                "SHIPYARD_SPEND_USD": str(spent),
            }
            try:  # the site's own command, from the server's config: a shell line, as cron runs it
                subprocess.run(self._alert_command, shell=True, env=env, timeout=30, check=False)
            except (OSError, subprocess.TimeoutExpired) as exc:
                log.warning("Budget %s: alert command failed: %s", budget.name, exc)


__all__ = ["BudgetService", "Commitment", "LaunchGuard", "Reckon", "no_guard", "request_tags"]
