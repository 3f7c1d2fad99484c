"""Budgets: a limit on what some of the work may cost in a period, and what happens near it.

A budget covers everything, or the resources whose tags match all of its ``scope``. Its spend is
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
from collections.abc import Mapping, Sequence
from decimal import Decimal, InvalidOperation
from typing import Any
from urllib.parse import urlsplit

from shipyard.errors import ValidationError

PERIODS = ("monthly", "total")
ACTIONS = ("deny", "stop")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}$")


@dataclasses.dataclass(frozen=True)
class Budget:
    name: str
    limit_usd: Decimal
    period: str = "monthly"
    scope: Mapping[str, str] = dataclasses.field(default_factory=dict)
    thresholds: tuple[int, ...] = (80, 100)
    actions: tuple[str, ...] = ()
    notify: str | None = None
    created: dt.datetime = dataclasses.field(default_factory=lambda: dt.datetime.now(dt.UTC))

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
        return cls(
            name=name,
            limit_usd=limit,
            period=period,
            scope={str(k): v for k, v in scope.items()},
            thresholds=tuple(sorted(set(thresholds))),
            actions=tuple(sorted(set(actions))),
            notify=str(notify) if notify is not None else None,
            created=now,
        )

    def covers(self, tags: Mapping[str, str]) -> bool:
        return all(tags.get(k) == v for k, v in self.scope.items())

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
