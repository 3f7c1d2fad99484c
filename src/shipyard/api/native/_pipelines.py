"""/api/v1/pipelines: pipelines (a page of them), one as a graph with its runs, a run with
its steps and their cost."""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from fastapi import APIRouter, Query, Request

from shipyard.api.native._authorization import listing, owner_of
from shipyard.api.native._common import MAX_OFFSET, cost_of, iso, platform_of
from shipyard.services import Platform

router = APIRouter()


def _step_cost(platform: Platform, step_type: str, jobs: Sequence[str]) -> tuple[Decimal, Decimal] | None:
    """What a pipeline step's jobs cost (the site's, SageMaker's); None for steps without jobs."""
    services: dict[str, Any] = {
        "Training": platform.training,
        "Processing": platform.processing,
        "Transform": platform.transform,
    }
    if step_type not in (*services, "Tuning") or not jobs:
        return None
    site, sagemaker = Decimal(0), Decimal(0)
    for name in jobs:
        if step_type == "Tuning":
            _, views = platform.tuning.describe(name)
            found = [cost_of(platform, v.job) for v in views if v.job]
        else:
            found = [cost_of(platform, services[step_type].describe(name))]
        site += sum((c for c, _ in found), Decimal(0))
        sagemaker += sum((m for _, m in found), Decimal(0))
    return site, sagemaker


@router.get("/api/v1/pipelines", tags=["pipelines"])
def list_pipelines(
    request: Request,
    owner: str | None = None,
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    limit: int = Query(50, ge=1, le=100),
) -> dict[str, Any]:
    """A page of the pipelines the caller may see, newest first (of ``owner``'s, when given)."""
    repository = platform_of(request).pipelines.repository
    found = listing(
        request,
        lambda start, size: repository.find(
            prefix=None,
            created_after=None,
            created_before=None,
            sort_by="CreationTime",
            ascending=False,
            offset=start,
            limit=size,
        ),
        arn_of=lambda p: p.arn,
        action="sagemaker:DescribePipeline",
        offset=offset,
        limit=limit,
        owner=owner or None,
    )
    return {
        "offset": offset,
        "owners": found.people,
        "items": [
            {
                "name": p.name,
                "owner": found.owner(p.arn),
                "description": p.description,
                "created": iso(p.created),
                "last_run": iso(p.last_run),
            }
            for p in found.items
        ],
    }


@router.get("/api/v1/pipelines/{name}", tags=["pipelines"])
def pipeline(request: Request, name: str, limit: int = Query(20, ge=1, le=100)) -> dict[str, Any]:
    """A pipeline: its steps as a graph (each step's type, what it waits for, the condition
    branch it is on), its parameters, and its newest runs."""
    from shipyard.core.pipelines import Definition, DefinitionError

    platform = platform_of(request)
    found = platform.pipelines.get(name)
    try:
        definition = Definition.parse(found.definition)
        steps = [
            {
                "name": s.name,
                "type": s.type,
                "after": sorted(definition.dependencies(s.name)),
                "branch": {"condition": s.branch[0], "outcome": s.branch[1]} if s.branch else None,
            }
            for s in definition.steps.values()
        ]
        parameters = [
            {"name": p.name, "type": p.type.value, "default": p.default}
            for p in definition.parameters.values()
        ]
        problem = None
    except DefinitionError as exc:
        steps, parameters, problem = [], [], exc.message
    runs = platform.pipelines.repository.executions(found.name, limit=limit)
    return {
        "name": found.name,
        "arn": found.arn,
        "owner": owner_of(request, found.arn),
        "description": found.description,
        "created": iso(found.created),
        "steps": steps,
        "parameters": parameters,
        "definition_problem": problem,
        "runs": [
            {
                "id": r.id,
                "status": r.status.value,
                "created": iso(r.created),
                "ended": iso(r.ended),
                "failure_reason": r.failure_reason,
            }
            for r in runs
        ],
    }


@router.get("/api/v1/pipelines/{name}/executions/{execution_id}", tags=["pipelines"])
def pipeline_execution(request: Request, name: str, execution_id: str) -> dict[str, Any]:
    """A pipeline run: its steps, each with the jobs it ran and their cost. The run's cost is
    what its own jobs cost, retries included; a step reused from the cache cost nothing here."""
    platform = platform_of(request)
    pipeline = platform.pipelines.get(name)
    execution = platform.pipelines.execution(f"{pipeline.arn}/execution/{execution_id}")
    steps, site, sagemaker = [], Decimal(0), Decimal(0)
    for run in sorted(execution.steps.values(), key=lambda r: (r.started, r.name)):
        cost = None if run.cache_source else _step_cost(platform, run.type, run.jobs)
        if cost is not None:
            site, sagemaker = site + cost[0], sagemaker + cost[1]
        steps.append(
            {
                "name": run.name,
                "type": run.type,
                "status": run.status.value,
                "attempts": run.attempts,
                "jobs": list(run.jobs),
                "started": run.started.isoformat(),
                "ended": run.ended.isoformat() if run.ended else None,
                "cached_from": run.cache_source,
                "failure_reason": run.failure_reason,
                "metadata": dict(run.metadata),
                "cost_usd": str(cost[0]) if cost is not None else None,
            }
        )
    return {
        "arn": execution.arn,
        "pipeline": execution.pipeline,
        "status": execution.status.value,
        "failure_reason": execution.failure_reason,
        "parameters": execution.parameter_list(),
        "created": execution.created.isoformat(),
        "ended": execution.ended.isoformat() if execution.ended else None,
        "steps": steps,
        "cost_usd": str(site),
        "sagemaker_cost_usd": str(sagemaker),
    }
