"""Ownership on the SageMaker API: what a List answer shows, and share tags checked up front.

A List operation shows only what the caller may reach (its own, its groups' shared ones, the
lab's: core.identity.may_reach) and may describe (its policies allow ``sagemaker:Describe<Noun>``
on the item's ARN). Pages are filtered as the store cuts them, so a page may come back shorter
than asked, with its NextToken, as AWS's own pages may.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from shipyard.api._context import RequestContext
from shipyard.api._json import Operation
from shipyard.core.tags import Tag

T = TypeVar("T")


def visible(ctx: RequestContext, items: Sequence[T], arn_of: Callable[[T], str], action: str) -> list[T]:
    """The ``items`` the caller may see: reached (one lookup for the page) and ``action``
    allowed on each one's ARN. Root and administrators see everything, at no cost."""
    caller = ctx.caller
    if caller.is_administrator or not items:
        return list(items)
    arns = [arn_of(item) for item in items]
    reach = ctx.platform.identity.reachable(caller, arns)
    return [
        item
        for item, arn in zip(items, arns, strict=True)
        if reach[arn] and caller.decide(action, arn).allowed
    ]


def tags_checked(operation: Operation) -> Operation:
    """``operation`` with its request's ``Tags`` checked before it creates anything: a share
    tag naming no group is refused (ValidationException naming the value) while nothing exists
    yet, not after the resource was made."""

    def checked(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
        if params.get("Tags"):
            ctx.platform.tagging.check([Tag.from_wire(t) for t in params["Tags"]])
        return operation(ctx, params)

    checked.__name__ = getattr(operation, "__name__", "operation")
    checked.__doc__ = operation.__doc__
    return checked
