"""/api/v1/endpoints: endpoints (a page of them), one with its variants and model servers,
its invocation metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from shipyard.api.native._authorization import listing, owner_of
from shipyard.api.native._common import MAX_OFFSET, iso, platform_of
from shipyard.errors import NotFoundError
from shipyard.services import Platform

router = APIRouter()


@router.get("/api/v1/endpoints", tags=["endpoints"])
def list_endpoints(
    request: Request,
    owner: str | None = None,
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    limit: int = Query(50, ge=1, le=100),
) -> dict[str, Any]:
    """A page of the endpoints the caller may see, newest first, with their status and
    configuration (of ``owner``'s, when given)."""
    repository = platform_of(request).endpoints.repository
    found = listing(
        request,
        lambda start, size: repository.find(offset=start, limit=size),
        arn_of=lambda e: e.arn,
        action="sagemaker:DescribeEndpoint",
        offset=offset,
        limit=limit,
        owner=owner or None,
    )
    return {
        "offset": offset,
        "owners": found.people,
        "items": [
            {
                "name": e.name,
                "owner": found.owner(e.arn),
                "status": e.status,
                "config": e.state.get("config"),
                "created": iso(e.created),
                "failure_reason": e.state.get("failure_reason"),
            }
            for e in found.items
        ],
    }


@router.get("/api/v1/endpoints/{name}", tags=["endpoints"])
def endpoint(request: Request, name: str) -> dict[str, Any]:
    """An endpoint, its variants (desired and serving) and its model servers."""
    endpoints = platform_of(request).endpoints
    found = endpoints.get(name)
    live = {v.name: v for v in endpoints.router.variants(name)}
    seconds, cost, sagemaker_cost = platform_of(request).costs.resource_cost(
        "endpoint", name, since=found.created
    )
    return {
        "name": found.name,
        "instance_seconds": round(float(seconds), 3),
        "cost_usd": str(cost),
        "sagemaker_cost_usd": str(sagemaker_cost),
        "arn": found.arn,
        "owner": owner_of(request, found.arn),
        "status": found.status,
        "failure_reason": found.state.get("failure_reason"),
        "config": found.state["config"],
        "variants": [
            {
                "name": v["name"],
                "model": v["model"],
                "instance_type": v["instance_type"],
                "serverless": v.get("serverless"),  # memory_mb and max_concurrency; None: instances
                "accepts": _accepts(platform_of(request), v.get("model")),  # the invoke box's, default first
                "desired_instance_count": v["instance_count"],
                "desired_weight": v["weight"],
                "weight": live[v["name"]].weight if v["name"] in live else None,
                "instances": [
                    {
                        "id": s.instance_dir.name,
                        "url": s.url,
                        "alive": s.alive,
                        "in_flight": s.in_flight,
                    }
                    for s in (live[v["name"]].servers if v["name"] in live else [])
                ],
            }
            for v in found.state["variants"]
        ],
    }


def _accepts(platform: Platform, model: str | None) -> list[str] | None:
    """The content types the variant's model reads, its default first; None when it has no
    model (capacity for inference components) or its model is gone (deleted while it serves)."""
    if not model:
        return None
    try:
        _, spec = platform.models.get(model)
    except NotFoundError:
        return None
    return list(platform.registry.accepted_by(spec.container))


@router.get("/api/v1/endpoints/{name}/metrics", tags=["endpoints"])
def endpoint_metrics(
    request: Request,
    name: str,
    minutes: int = Query(60, ge=1, le=24 * 60),
    period: int = Query(60, ge=60, le=24 * 3600),
    variant: str | None = None,
) -> dict[str, Any]:
    """Invocations, errors and latencies (µs) per period, as SageMaker publishes them."""
    import time

    from shipyard.services.endpoint_metrics import COUNTS, LATENCIES

    endpoints = platform_of(request).endpoints
    endpoints.get(name)
    end = time.time()
    return {
        "endpoint": name,
        "period": period,
        "metrics": {
            metric: [
                {"timestamp": at, **stats.to_dict()}
                for at, stats in endpoints.metrics.series(
                    name, metric, start=end - minutes * 60, end=end, period=period, variant=variant
                )
            ]
            for metric in (*COUNTS, *LATENCIES)
        },
    }
