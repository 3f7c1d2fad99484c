"""/api/v1/budgets and /api/v1/alerts: budgets with their spend, and the alerts they raised.

An administrator sees and changes every budget; a user sees their own (``user`` scope) and the
alerts they raised, and may make and delete only budgets of their own (services/budgets.py: the
caller is the viewer). Whether the call is allowed at all is the route's policy
(``budgets:ViewBudget`` / ``budgets:ModifyBudget``, api/native/_authorization.py).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query, Request

from shipyard.api.native._authorization import caller_of
from shipyard.api.native._common import platform_of

router = APIRouter()


@router.get("/api/v1/budgets", tags=["costs"])
def budgets(request: Request) -> list[dict[str, Any]]:
    """Every budget the caller may see, with its spend this period and what running work has
    committed."""
    service = platform_of(request).budgets
    return [service.status(b) for b in service.visible(caller_of(request))]


@router.post("/api/v1/budgets", tags=["costs"], status_code=201)
def create_budget(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """A budget: name, limit_usd, period (monthly or total), scope (tag key → value), user or
    group (only that user's work, or the group's members'), thresholds (percentages), actions
    (deny, stop), notify (a webhook on this machine)."""
    service = platform_of(request).budgets
    return service.status(service.create(body, caller_of(request)))


@router.get("/api/v1/budgets/{name}", tags=["costs"])
def budget(request: Request, name: str) -> dict[str, Any]:
    service = platform_of(request).budgets
    viewer = caller_of(request)
    return {
        **service.status(service.get(name, viewer)),
        "alerts": [e.to_json() for e in service.events(name, viewer=viewer)],
    }


@router.delete("/api/v1/budgets/{name}", tags=["costs"], status_code=204)
def delete_budget(request: Request, name: str) -> None:
    platform_of(request).budgets.delete(name, caller_of(request))


@router.get("/api/v1/alerts", tags=["costs"])
def alerts(
    request: Request, budget: str | None = None, limit: int = Query(100, ge=1, le=1000)
) -> list[dict[str, Any]]:
    """Budget alerts, newest first: thresholds crossed, launches denied, work stopped (of the
    budgets the caller may see)."""
    return [e.to_json() for e in platform_of(request).budgets.events(budget, limit, caller_of(request))]
