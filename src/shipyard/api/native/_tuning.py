"""/api/v1/tuning-jobs: tuning jobs (a page of them), one with its trials and cost, stop."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Query, Request

from shipyard.api.native._authorization import listing, owner_of
from shipyard.api.native._common import MAX_OFFSET, cost_of, iso, platform_of

router = APIRouter()


@router.get("/api/v1/tuning-jobs/{name}", tags=["tuning"])
def tuning_job(request: Request, name: str) -> dict[str, Any]:
    """A tuning job's trials and its cost: the sum of its training jobs' costs (so far)."""
    platform = platform_of(request)
    tuning = platform.tuning
    job, views = tuning.describe(name)
    best = tuning.best(job, views)
    costs = {v.trial.job: cost_of(platform, v.job) for v in views if v.job}
    return {
        "name": job.name,
        "arn": job.arn,
        "owner": owner_of(request, job.arn),
        "status": job.status.value,
        "strategy": job.spec.strategy.value,
        "objective": {"metrics": job.spec.objective_metrics, "maximize": job.spec.maximize},
        "best_training_job": best.trial.job if best else None,
        "parallel_note": tuning.parallel_note(job),  # why fewer trials run at once than asked
        "trials": [
            {
                "number": v.trial.number + 1,
                "training_job": v.trial.job,
                "status": v.status.value,
                "definition": v.trial.definition,
                "hyperparameters": dict(v.trial.hyperparameters),
                "objective": v.objective,
                "cost_usd": str(costs[v.trial.job][0]) if v.trial.job in costs else None,
            }
            for v in views
        ],
        "cost_usd": str(sum((c for c, _ in costs.values()), Decimal(0))),
        "sagemaker_cost_usd": str(sum((m for _, m in costs.values()), Decimal(0))),
    }


@router.get("/api/v1/tuning-jobs", tags=["tuning"])
def list_tuning_jobs(
    request: Request,
    status: str | None = None,
    name: str | None = None,
    owner: str | None = None,
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    limit: int = Query(25, ge=1, le=100),
) -> dict[str, Any]:
    """A page of tuning jobs the caller may see, newest first (of ``owner``'s, when given)."""
    repository = platform_of(request).tuning.repository
    found = listing(
        request,
        lambda start, size: repository.find(name_contains=name, status=status, offset=start, limit=size),
        arn_of=lambda j: j.arn,
        action="sagemaker:DescribeHyperParameterTuningJob",
        offset=offset,
        limit=limit,
        owner=owner or None,
    )
    return {
        "total": repository.count(name_contains=name, status=status) if found.total is None else found.total,
        "offset": offset,
        "owners": found.people,
        "items": [
            {
                "name": j.name,
                "owner": found.owner(j.arn),
                "status": j.status.value,
                "strategy": j.spec.strategy.value,
                "trials": len(j.trials),
                "max_trials": j.spec.max_jobs,
                "created": iso(j.created),
                "ended": iso(j.end_time),
            }
            for j in found.items
        ],
    }


@router.post("/api/v1/tuning-jobs/{name}/stop", tags=["tuning"])
def stop_tuning_job(request: Request, name: str) -> dict[str, Any]:
    """Stop a tuning job and its running trials."""
    platform = platform_of(request)
    platform.tuning.stop(name)
    platform.scheduler.wake()
    return {"name": name, "status": "Stopping"}
