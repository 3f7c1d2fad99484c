"""/api/v1/costs, utilization, waste and estimates: spend from the ledger, what instances used,
what was idle or oversized, and what a launch would cost. A user who is not an administrator
sees the spend of their own work only (services/costs.py: the caller is the viewer)."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Body, HTTPException, Query, Request

from shipyard.api.native._authorization import caller_of
from shipyard.api.native._common import platform_of, when
from shipyard.errors import ValidationError

router = APIRouter()


@router.get("/api/v1/costs", tags=["costs"], response_model=None)
def costs(
    request: Request,
    group_by: list[str] = Query(
        ["kind"], description="kind, instance_type, resource, parent, user, day, month or tag:<key>"
    ),
    start: str | None = Query(None, description="ISO date or time (UTC) [default: the first of this month]"),
    end: str | None = Query(None, description="ISO date or time (UTC), exclusive [default: now]"),
    format: str = Query("json", description="json or csv"),
) -> Any:
    """Spend from the ledger in [start, end), grouped: the site's cost and SageMaker's for the same
    (a user's own only, unless the caller is an administrator). By ``user``: the owner's name,
    null for the lab's (root's). ``gpu_seconds``: the GPU-seconds of the instances' GPUs (as
    placed), whose price is in the cost."""
    import csv
    import datetime as dt
    import io

    from fastapi.responses import Response

    now = dt.datetime.now(dt.UTC)
    begin = when(start, "start") if start else dt.datetime(now.year, now.month, 1, tzinfo=dt.UTC)
    finish = when(end, "end") if end else now
    if format not in ("json", "csv"):
        raise ValidationError(f"format {format!r} is not json or csv", field="format", value=format)
    rows = platform_of(request).costs.report(group_by, start=begin, end=finish, viewer=caller_of(request))
    if format == "csv":
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow([*group_by, "unit_seconds", "gpu_seconds", "cost_usd", "sagemaker_cost_usd"])
        for row in rows:
            writer.writerow(
                [
                    *("" if row[g] is None else row[g] for g in group_by),
                    row["unit_seconds"],
                    row["gpu_seconds"],
                    row["cost_usd"],
                    row["sagemaker_cost_usd"],
                ]
            )
        return Response(out.getvalue(), media_type="text/csv")
    return {
        "start": begin.isoformat(),
        "end": finish.isoformat(),
        "group_by": group_by,
        "rows": [
            {**r, "cost_usd": str(r["cost_usd"]), "sagemaker_cost_usd": str(r["sagemaker_cost_usd"])}
            for r in rows
        ],
        "total": {
            "unit_seconds": round(sum(r["unit_seconds"] for r in rows), 3),
            "gpu_seconds": round(sum(r["gpu_seconds"] for r in rows), 3),
            "cost_usd": str(sum((r["cost_usd"] for r in rows), Decimal(0))),
            "sagemaker_cost_usd": str(sum((r["sagemaker_cost_usd"] for r in rows), Decimal(0))),
        },
    }


@router.get("/api/v1/{collection}/{name}/utilization", tags=["costs"])
def utilization(request: Request, collection: str, name: str) -> dict[str, Any]:
    """CPU (the sum over cores, %), memory and disk (% of the instance type's) samples of a
    job's instances or an endpoint's model servers, by host."""
    kinds = {
        "training-jobs": "training",
        "processing-jobs": "processing",
        "transform-jobs": "transform",
        "endpoints": "endpoint",
    }
    if collection not in kinds:
        raise HTTPException(404, f"No {collection} here")
    platform = platform_of(request)
    kind = kinds[collection]
    if kind == "endpoint":
        platform.endpoints.get(name)
    else:
        services: dict[str, Any] = {
            "training": platform.training,
            "processing": platform.processing,
            "transform": platform.transform,
        }
        services[kind].describe(name)  # a clear 404 for a job that does not exist
    hosts: dict[str, list[dict[str, Any]]] = {}
    for sample in platform.utilization.series(kind, name):
        hosts.setdefault(sample.host, []).append(sample.to_json())
    return {"name": name, "kind": kind, "hosts": hosts}


@router.get("/api/v1/waste", tags=["costs"])
def waste(
    request: Request,
    since: str | None = Query(None, description="Jobs ended since this ISO date [default: 30 days ago]"),
) -> dict[str, Any]:
    """Idle endpoints, and right-sizing suggestions for sampled jobs."""
    import datetime as dt

    platform = platform_of(request)
    begin = when(since, "since") if since else dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
    return {
        "idle_endpoints": [e.to_json() for e in platform.waste.idle_endpoints()],
        "right_sizing": platform.waste.right_sizing(begin),
    }


@router.post("/api/v1/estimates", tags=["costs"])
def estimate(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """The worst case of a launch before it is made: ``{"kind": "training" | "processing" |
    "transform" | "tuning" | "endpoint", "request": <the SageMaker create request>}`` (for an
    endpoint, its configuration's request), priced as it will be charged here: a job that
    fit-to-machine will scale down at the type that gives what it will be granted (``billed_as``),
    SageMaker's price of the type asked beside it. Also the budgets that would deny it, of those
    the caller may see, were the caller to launch it."""
    from shipyard.core import estimates

    platform = platform_of(request)
    kinds = {
        "training": estimates.training,
        "processing": estimates.processing,
        "transform": estimates.transform,
        "tuning": estimates.tuning,
        "endpoint": lambda r, p: estimates.endpoint(r["ProductionVariants"], p),
    }
    kind, params = body.get("kind"), body.get("request")
    if kind not in kinds:
        raise ValidationError(f"kind {kind!r} is not one of {', '.join(kinds)}", field="kind", value=kind)
    if not isinstance(params, dict):
        raise ValidationError("request must be the create request, as JSON", field="request")
    try:
        found = kinds[kind](params, platform.costs.launch_price)
    except (KeyError, TypeError, ValueError) as exc:
        raise ValidationError(
            f"The {kind} request cannot be reckoned: {exc!r} is missing or wrong", field="request"
        ) from None
    tags = {t["Key"]: t["Value"] for t in params.get("Tags", [])}
    caller = caller_of(request)
    return {**found.to_json(), "denied_by": platform.budgets.would_deny(found, tags, caller.user, caller)}
