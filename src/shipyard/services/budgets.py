"""Budgets: spend against limits, alerts at thresholds, launches denied, work stopped.

See :mod:`shipyard.core.budgets` for what a budget means. Launches are checked under one lock
(:meth:`BudgetService.launch`), and a launch's job exists before the lock is let go, so the next
launch counts it as committed: two launches at once cannot both slip under a limit. (One server
serves a store; the lock is the server's.)

Who sees what: the service's reading methods take the ``viewer`` (the caller's
:class:`~shipyard.core.credentials.Principal`; None: the server itself). An administrator sees
every budget; a user sees their own (``user`` scope) only, and may create and delete only
those. A group's budget sums the spend of the group's members as they are now.
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
from collections.abc import Callable, Collection, Iterator, Mapping
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import httpx

from shipyard.core.budgets import Budget
from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.costs import CENT, money, user_name
from shipyard.core.credentials import Principal
from shipyard.core.estimates import Estimate
from shipyard.errors import AccessDenied, LimitExceededError, NotFoundError, ValidationError
from shipyard.services._guard import LaunchGuard, Reckon, no_guard, request_tags
from shipyard.services.costs import CostService
from shipyard.store.budgets import BudgetEvent, BudgetNotFound, BudgetRepository

if TYPE_CHECKING:
    from shipyard.services.identity import IdentityService

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class Commitment:
    """Work under way that may still cost ``remaining_usd`` (its worst case minus its cost so far).
    ``stop`` stops it (None for work a budget does not stop, such as a tuning job's future trials).
    ``owner``: the ARN of the user who launched it (None: root)."""

    kind: str
    name: str
    tags: Mapping[str, str]
    remaining_usd: Decimal
    stop: Callable[[], None] | None = None
    owner: str | None = None


class BudgetService:
    """Args:
    commitments: The work under way (jobs, tuning jobs) with what it may still cost.
    alert_command: The site's command for every alert (the server's setting), run with the
        alert in ``SHIPYARD_ALERT`` (JSON), ``SHIPYARD_BUDGET`` and ``SHIPYARD_SPEND_USD``.
    identity: The users and groups (a user's or group's budget must name one that exists; a
        group's members are read from it). Without it, no budget may name a user or a group.
    """

    def __init__(
        self,
        repository: BudgetRepository,
        costs: CostService,
        commitments: Callable[[], list[Commitment]],
        *,
        alert_command: str | None = None,
        identity: IdentityService | None = None,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.repository = repository
        self._clock = clock
        self._costs = costs
        self._commitments = commitments
        self._alert_command = alert_command
        self._identity = identity
        self._launch_lock = threading.Lock()

    # -- budgets ------------------------------------------------------------------------------------
    def create(self, body: Mapping[str, Any], viewer: Principal | None = None) -> Budget:
        """A new budget. A user who is not an administrator may make only budgets of their own
        (``user`` is theirs, and is made so when it is not given).

        Raises:
            ValidationError: a field is wrong, or names a user or group that does not exist.
            AccessDenied: a user's budget for someone else.
            ConflictError: the name is taken.
        """
        if _limited(viewer):
            assert viewer is not None
            own = user_name(viewer.user)
            if own is not None and body.get("user") is None and body.get("group") is None:
                body = {**body, "user": own}
            budget = Budget.from_request(body, self._clock.now())
            if own is None or not budget.belongs_to(own):
                raise AccessDenied(
                    viewer.arn,
                    "budgets:ModifyBudget",
                    f"budget/{budget.name}",
                    f"a user may make budgets of their own only, not of {budget.whose}",
                )
        else:
            budget = Budget.from_request(body, self._clock.now())
        self._check_people(budget)
        self.repository.create(budget)
        return budget

    def _check_people(self, budget: Budget) -> None:
        for field, name in (("user", budget.user), ("group", budget.group)):
            if name is None:
                continue
            if self._identity is None:
                raise ValidationError(
                    f"This server has no users: a budget cannot name the {field} {name!r}",
                    field=field,
                    value=name,
                )
            try:
                self._identity.user(name) if field == "user" else self._identity.group(name)
            except NotFoundError:
                raise ValidationError(
                    f"The {field} {name!r} does not exist (a budget's {field} must be one of this server's)",
                    field=field,
                    value=name,
                ) from None

    def visible(self, viewer: Principal | None = None) -> list[Budget]:
        """The budgets ``viewer`` may see: every one for an administrator, a user's own else."""
        return [b for b in self.repository.all() if _sees(viewer, b)]

    def get(self, name: str, viewer: Principal | None = None) -> Budget:
        """The budget named ``name`` (BudgetNotFound also when ``viewer`` may not see it)."""
        budget = self.repository.get(name)
        if not _sees(viewer, budget):
            raise BudgetNotFound(name)
        return budget

    def delete(self, name: str, viewer: Principal | None = None) -> None:
        self.get(name, viewer)
        self.repository.delete(name)

    def status(self, budget: Budget, now: dt.datetime | None = None) -> dict[str, Any]:
        """The budget with its spend this period, what running work has committed, and how close
        they are to the limit."""
        now = now or self._clock.now()
        spent = self.spend(budget, now)
        committed = self._committed(budget, self._members(budget))
        return {
            **budget.to_json(),
            "period_start": budget.period_start(now).isoformat(),
            "spend_usd": str(spent),
            "committed_usd": str(committed),
            "percent": float(round(spent / budget.limit_usd * 100, 2)),
        }

    def spend(self, budget: Budget, now: dt.datetime) -> Decimal:
        """What the work the budget covers has cost this period (a group's: its members')."""
        start = budget.period_start(now)
        members = self._members(budget)
        return sum(
            (
                i.cost(start, now, now=now)
                for i in self._costs.usage.overlapping(start, now)
                if budget.covers(i.tags, i.owner, members)
            ),
            Decimal(0),
        ).quantize(CENT)

    def _committed(self, budget: Budget, members: Collection[str]) -> Decimal:
        return sum(
            (c.remaining_usd for c in self._commitments() if budget.covers(c.tags, c.owner, members)),
            Decimal(0),
        ).quantize(CENT)

    def _members(self, budget: Budget) -> frozenset[str]:
        """The ARNs of the members of a group's budget's group, now (none: not a group's, or the
        group is gone)."""
        if budget.group is None or self._identity is None:
            return frozenset()
        try:
            return frozenset(u.arn for u in self._identity.group(budget.group)[1])
        except NotFoundError:
            return frozenset()

    def events(
        self, budget: str | None = None, limit: int = 100, viewer: Principal | None = None
    ) -> list[BudgetEvent]:
        """Alerts, newest first: of ``budget``, or of every budget ``viewer`` may see."""
        if budget is not None:
            self.get(budget, viewer)
            return self.repository.events(budget, limit)
        if not _limited(viewer):
            return self.repository.events(None, limit)
        return self.repository.events(None, limit, among=[b.name for b in self.visible(viewer)])

    # -- launches -----------------------------------------------------------------------------------
    def would_deny(
        self,
        estimate: Estimate,
        tags: Mapping[str, str],
        owner: str | None = None,
        viewer: Principal | None = None,
    ) -> list[str]:
        """The ``deny`` budgets (of those ``viewer`` may see) that would refuse a launch of
        ``estimate`` with ``tags`` by ``owner`` now."""
        now = self._clock.now()
        return [
            b.name for b in self.visible(viewer) if self._denies(b, estimate, tags, owner, now) is not None
        ]

    def _denies(
        self,
        budget: Budget,
        estimate: Estimate,
        tags: Mapping[str, str],
        owner: str | None,
        now: dt.datetime,
    ) -> tuple[Decimal, Decimal] | None:
        """(spent, committed) when ``budget`` refuses the launch, else None."""
        if "deny" not in budget.actions:
            return None
        members = self._members(budget)
        if not budget.covers(tags, owner, members):
            return None
        spent = self.spend(budget, now)
        committed = self._committed(budget, members)
        return (spent, committed) if spent + committed + estimate.usd > budget.limit_usd else None

    @contextlib.contextmanager
    def launch(
        self,
        kind: str,
        name: str,
        estimate: Estimate,
        tags: Mapping[str, str],
        *,
        owner: str | None = None,
    ) -> Iterator[None]:
        """Around the creation of a launch: LimitExceededError (ResourceLimitExceeded) when a
        ``deny`` budget covering ``tags`` and ``owner`` (the launching user's ARN; None: root)
        cannot take ``estimate`` on top of what is spent and committed; else the creation runs
        while no other launch is checked."""
        with self._launch_lock:
            now = self._clock.now()
            for budget in self.repository.all():
                refused = self._denies(budget, estimate, tags, owner, now)
                if refused is not None:
                    spent, committed = refused
                    whose = "" if budget.whose == "everyone" else f"{budget.whose}, "
                    message = (
                        f"Budget {budget.name!r} ({whose}{budget.period}, limit {money(budget.limit_usd)}) "
                        f"denies {kind} {name!r}: {money(spent)} spent and {money(committed)} committed by "
                        f"running work, and it may cost up to {money(estimate.usd)} ({estimate.basis})"
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
        *,
        owner: str | None = None,
    ) -> contextlib.AbstractContextManager[None]:
        """:meth:`launch` with the estimate reckoned from a create request; a request too broken
        to reckon is let through to its creation, which names what is wrong."""
        try:
            estimate = reckon(request, self._costs.launch_price)
        except (KeyError, TypeError, ValueError, ArithmeticError):
            return contextlib.nullcontext()
        return self.launch(kind, name, estimate, tags, owner=owner)

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
                members = self._members(budget)
                for work in self._commitments():
                    if work.stop is None or not budget.covers(work.tags, work.owner, members):
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


def _limited(viewer: Principal | None) -> bool:
    """Whether ``viewer`` sees only budgets of their own (not the server, not an administrator)."""
    return viewer is not None and not viewer.is_administrator


def _sees(viewer: Principal | None, budget: Budget) -> bool:
    if not _limited(viewer):
        return True
    assert viewer is not None
    own = user_name(viewer.user)
    return own is not None and budget.belongs_to(own)


__all__ = ["BudgetService", "Commitment", "LaunchGuard", "Reckon", "no_guard", "request_tags"]
