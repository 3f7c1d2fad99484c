"""/api/v1/processing-jobs: a processing job's status, placement and cost."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

from shipyard.api.native._common import job_view, platform_of

router = APIRouter()


@router.get("/api/v1/processing-jobs/{name}", tags=["processing"])
def processing_job(request: Request, name: str) -> dict[str, Any]:
    """A processing job's status, placement and cost (final once it ended)."""
    return job_view(platform_of(request), platform_of(request).processing.describe(name))
