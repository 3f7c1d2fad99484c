"""Budgets: a limit on what some of the work may cost in a period, and what happens near it.

A budget covers everything, or the resources whose tags match all of its ``scope``, and may be
narrowed to one person's work: a ``user``'s (what that user created) or a ``group``'s (what
the group's members created, summed). Its spend is
the ledger's cost (the site's prices) of those resources in the current period: this calendar
month (UTC) for ``monthly``, since the budget was made for ``total``. Crossing a threshold
(a percentage of the limit) records an alert, once per period, and POSTs it to the budget's
``notify`` webhook, which must be on this machine (a command for alerts is the site's to set, in
the server's config, never a client's). Its actions:

- ``deny``: a launch whose worst case would take the committed spend past the limit is refused.
  Committed spend is what was spent plus what running and queued jobs in scope may still cost
  (their worst case minus what they have cost so far). Launches are checked one at a time, so
  two at once cannot both slip under the limit.
- ``stop``: once the spend reaches the limit, running jobs in scope are stopped.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from collections.abc import Collection, Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from shipyard.core.costs import user_name
from shipyard.core.identity import check_name
from shipyard.errors import ValidationError

PERIODS = ("monthly", "total")
ACTIONS = ("deny", "stop")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclasses.dataclass(frozen=True)
class Budget:
    """A budget. ``user``/``group``: only the work that user, or the members of that group,
    created (at most one of them); ``scope``: only resources with these tags."""

    name: str
    limit_usd: Decimal
    period: str = "monthly"
    scope: Mapping[str, str] = dataclasses.field(default_factory=dict)
    thresholds: tuple[int, ...] = (80, 100)
    actions: tuple[str, ...] = ()
    notify: str | None = None
    created: dt.datetime = dataclasses.field(default_factory=lambda: dt.datetime.now(dt.UTC))
    user: str | None = None
    group: str | None = None

    @classmethod
    def from_request(cls, body: Mapping[str, Any], now: dt.datetime) -> Budget:
        """A budget from the API's JSON; ValidationError naming the field that is wrong."""
        name = str(body.get("name", ""))
        if not _NAME.match(name):
            raise ValidationError(
                f"Budget name {name!r} must be 1-63 letters, digits, '-', '_' or '.'",
                field="name",
                value=name,
            )
        try:
            limit = Decimal(str(body.get("limit_usd")))
        except InvalidOperation:
            limit = Decimal(-1)
        if not limit.is_finite() or limit <= 0:
            raise ValidationError(
                f"limit_usd must be a positive number of USD, got {body.get('limit_usd')!r}",
                field="limit_usd",
                value=body.get("limit_usd"),
            )
        period = str(body.get("period", "monthly"))
        if period not in PERIODS:
            raise ValidationError(
                f"period {period!r} is not one of {', '.join(PERIODS)}", field="period", value=period
            )
        scope = body.get("scope") or {}
        if not isinstance(scope, Mapping) or not all(isinstance(v, str) for v in scope.values()):
            raise ValidationError(
                f"scope must map tag keys to values, got {scope!r}", field="scope", value=repr(scope)
            )
        thresholds = body.get("thresholds", [80, 100])
        if (
            not isinstance(thresholds, Sequence)
            or isinstance(thresholds, str)
            or not all(isinstance(t, int) and 0 < t <= 1000 for t in thresholds)
        ):
            raise ValidationError(
                f"thresholds must be percentages of the limit (1-1000), got {thresholds!r}",
                field="thresholds",
                value=repr(thresholds),
            )
        actions = body.get("actions") or []
        for action in actions:
            if action not in ACTIONS:
                raise ValidationError(
                    f"action {action!r} is not one of {', '.join(ACTIONS)} (alerts are always recorded)",
                    field="actions",
                    value=action,
                )
        notify = body.get("notify")
        if notify is not None:
            check_notify(str(notify))
        user, group = body.get("user"), body.get("group")
        if user is not None:
            check_name(user, "user")
        if group is not None:
            check_name(group, "group")
            if user is not None:
                raise ValidationError(
                    f"A budget is a user's or a group's, not both: got user {user!r} and group {group!r}",
                    field="group",
                    value=group,
                )
        return cls(
            name=name,
            limit_usd=limit,
            period=period,
            scope={str(k): v for k, v in scope.items()},
            thresholds=tuple(sorted(set(thresholds))),
            actions=tuple(sorted(set(actions))),
            notify=str(notify) if notify is not None else None,
            created=now,
            user=user,
            group=group,
        )

    def covers(
        self, tags: Mapping[str, str], owner: str | None = None, members: Collection[str] = ()
    ) -> bool:
        """Whether work with ``tags``, created by ``owner`` (a user's ARN; None: root), is this
        budget's; ``members``: the ARNs of its group's members (for a group's budget)."""
        if not all(tags.get(k) == v for k, v in self.scope.items()):
            return False
        if self.user is not None:
            name = user_name(owner)
            return name is not None and name.lower() == self.user.lower()
        if self.group is not None:
            return owner is not None and owner in members
        return True

    def belongs_to(self, user: str) -> bool:
        """Whether this is the named user's own budget (what that user may see of budgets)."""
        return self.user is not None and self.user.lower() == user.lower()

    @property
    def whose(self) -> str:
        """Whose work it covers, for people: "everyone", "user alice" or "group students"."""
        if self.user is not None:
            return f"user {self.user}"
        return f"group {self.group}" if self.group is not None else "everyone"

    def period_start(self, now: dt.datetime) -> dt.datetime:
        if self.period == "monthly":
            return dt.datetime(now.year, now.month, 1, tzinfo=dt.UTC)
        return self.created

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "limit_usd": str(self.limit_usd),
            "period": self.period,
            "scope": dict(self.scope),
            "thresholds": list(self.thresholds),
            "actions": list(self.actions),
            "notify": self.notify,
            "created": self.created.isoformat(),
            "user": self.user,
            "group": self.group,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Budget:
        return cls(
            name=data["name"],
            limit_usd=Decimal(data["limit_usd"]),
            period=data["period"],
            scope=dict(data["scope"]),
            thresholds=tuple(data["thresholds"]),
            actions=tuple(data["actions"]),
            notify=data.get("notify"),
            created=dt.datetime.fromisoformat(data["created"]),
            user=data.get("user"),  # budgets made before there were users have neither
            group=data.get("group"),
        )


def check_notify(hook: str) -> str:
    """A budget's webhook: an http URL on this machine (127.0.0.1, localhost or [::1])."""
    parts = urlsplit(hook)
    if parts.scheme not in ("http", "https") or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValidationError(
            f"notify {hook!r} must be an http URL on this machine (127.0.0.1, localhost or [::1])",
            field="notify",
            value=hook,
        )
    return hook
