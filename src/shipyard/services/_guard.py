"""The launch guard's shape: what a service that creates jobs or endpoints calls around the
creation, so that every entry point (the API, pipelines, tuning) passes the budgets once.

Kept apart from :mod:`shipyard.services.budgets` so the job services can take one without
importing the budgets (which read costs, which read jobs).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import Any, Protocol

from shipyard.core.estimates import Estimate, Prices

Reckon = Callable[[Mapping[str, Any], Prices], Estimate]  # a create request's worst case


class LaunchGuard(Protocol):
    """What services that create jobs and endpoints call around the creation (the budgets'
    :meth:`BudgetService.guard`): LimitExceededError when a budget refuses it. ``owner``: the
    ARN of the user launching it (None: root), whose budgets and whose groups' apply."""

    def __call__(
        self,
        kind: str,
        name: str,
        reckon: Reckon,
        request: Mapping[str, Any],
        tags: Mapping[str, str],
        *,
        owner: str | None = None,
    ) -> contextlib.AbstractContextManager[None]: ...


def no_guard(
    kind: str,
    name: str,
    reckon: Reckon,
    request: Mapping[str, Any],
    tags: Mapping[str, str],
    *,
    owner: str | None = None,
) -> contextlib.AbstractContextManager[None]:
    """A :class:`LaunchGuard` that lets everything through (no budgets)."""
    return contextlib.nullcontext()


def request_tags(params: Mapping[str, Any]) -> dict[str, str]:
    """The tags a create request gives its resource (what budgets are scoped by)."""
    return {t["Key"]: t["Value"] for t in params.get("Tags") or []}
