"""/api/v1/health, /api/v1/info and /api/v1/whoami: whether the server is ready, how it is set
up, and who the caller is."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request

import shipyard
from shipyard.api.native._authorization import caller_of, owner_name
from shipyard.api.native._common import platform_of

router = APIRouter()


@router.get("/api/v1/health", tags=["server"])
def health(request: Request) -> dict[str, str]:
    """200 once the server is ready to serve."""
    platform_of(request)
    return {"status": "ok", "version": shipyard.__version__}


@router.get("/api/v1/info", tags=["server"])
def info(request: Request) -> dict[str, Any]:
    """How this server is set up (where it keeps its state: to administrators only)."""
    settings = platform_of(request).settings
    answer: dict[str, Any] = {
        "version": shipyard.__version__,
        "database": platform_of(request).db.dialect,
        "object_store": settings.object_store,
        "account_id": settings.account_id,
        "region": settings.region,
        "auth": settings.auth_enabled,
        # the machine's GPUs the local backend hands out (what `shipyard instance-types` shows)
        "gpus": [
            {"index": g.index, "name": g.name, "memory_gib": g.memory_gib}
            for backend in platform_of(request).backends
            for g in backend.devices
        ],
    }
    if caller_of(request).is_administrator:
        answer["data_dir"] = str(settings.data_dir)
    return answer


@router.get("/api/v1/whoami", tags=["server"])
def whoami(request: Request) -> dict[str, Any]:
    """Who the call acts as: its ARN, the user's name (None: the account's root), whether it is
    an administrator, the user's groups, and whether the server requires credentials."""
    caller = caller_of(request)
    return {
        "arn": caller.arn,
        "user": owner_name(caller.user),
        "administrator": caller.is_administrator,
        "groups": list(caller.groups),
        "auth": platform_of(request).settings.auth_enabled,
    }
