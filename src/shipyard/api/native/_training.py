"""/api/v1/training-jobs: a training job's status, placement, cost and metrics."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from shipyard.api.native._common import job_view, platform_of

router = APIRouter()


@router.get("/api/v1/training-jobs/{name}", tags=["training"])
def training_job(request: Request, name: str) -> dict[str, Any]:
    """A training job's status, placement and cost (so far, or final)."""
    job = platform_of(request).training.describe(name)
    return {
        **job_view(platform_of(request), job),
        "secondary_status": job.state.secondary.value,
        "model_artifacts": job.run.model_artifacts,
    }


@router.get("/api/v1/training-jobs/{name}/metrics", tags=["training"])
def training_job_metrics(request: Request, name: str) -> dict[str, Any]:
    """Every point of every metric the job's MetricDefinitions matched, in step order."""
    series = platform_of(request).training.metric_series(name)
    return {
        "job": name,
        "metrics": {
            metric: [{"step": p.step, "value": p.value, "timestamp": p.timestamp.isoformat()} for p in points]
            for metric, points in series.items()
        },
    }
