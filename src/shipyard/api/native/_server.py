"""/api/v1/health and /api/v1/info: whether the server is ready, and how it is set up."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

import shipyard
from shipyard.api.native._common import platform_of

router = APIRouter()


@router.get("/api/v1/health", tags=["server"])
def health(request: Request) -> dict[str, str]:
    """200 once the server is ready to serve."""
    platform_of(request)
    return {"status": "ok", "version": shipyard.__version__}


@router.get("/api/v1/info", tags=["server"])
def info(request: Request) -> dict[str, Any]:
    """How this server is set up."""
    settings = platform_of(request).settings
    return {
        "version": shipyard.__version__,
        "data_dir": str(settings.data_dir),
        "database": platform_of(request).db.dialect,
        "object_store": settings.object_store,
        "account_id": settings.account_id,
        "region": settings.region,
        "auth": settings.auth_enabled,
    }
