"""Cost Explorer (AWS JSON 1.1, ``X-Amz-Target: AWSInsightsIndexService.<Operation>``):
GetCostAndUsage and GetCostForecast answered from the cost ledger (core/cost_explorer.py).

A user who is not an administrator sees the spend of what they own only, as in the native
API's cost reports (services/costs.py :func:`~shipyard.services.costs.visible`)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from shipyard import errors
from shipyard.api._context import RequestContext
from shipyard.api._json import ErrorTypes, JsonApi, Operation
from shipyard.core import cost_explorer
from shipyard.schema import ServiceSchema

COST_EXPLORER_ERRORS: ErrorTypes = [
    (errors.ValidationError, "ValidationException", 400),
    (errors.NotImplementedOperation, "ValidationException", 400),
    (errors.AccessDenied, "AccessDeniedException", 403),
]


def _window(start: dt.date, end: dt.date) -> tuple[dt.datetime, dt.datetime]:
    return (
        dt.datetime(start.year, start.month, start.day, tzinfo=dt.UTC),
        dt.datetime(end.year, end.month, end.day, tzinfo=dt.UTC),
    )


def get_cost_and_usage(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    start, end = _window(*cost_explorer.period(params["TimePeriod"]))
    intervals, now = ctx.platform.costs.ledger(start, end, viewer=ctx.caller)
    return cost_explorer.cost_and_usage(intervals, params, now=now, region=ctx.region, account=ctx.account_id)


def get_cost_forecast(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    now = ctx.platform.costs.now()
    intervals, now = ctx.platform.costs.ledger(now - cost_explorer.RATE_WINDOW, now, viewer=ctx.caller)
    return cost_explorer.cost_forecast(intervals, params, now=now, region=ctx.region, account=ctx.account_id)


OPERATIONS: dict[str, Operation] = {
    "GetCostAndUsage": get_cost_and_usage,
    "GetCostForecast": get_cost_forecast,
}


def cost_explorer_api() -> JsonApi:
    return JsonApi("Cost Explorer", ServiceSchema.load("ce"), OPERATIONS, COST_EXPLORER_ERRORS)
