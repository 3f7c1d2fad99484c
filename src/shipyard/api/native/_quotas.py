"""/api/v1/quotas: quotas by user and group (the config file's, and those set at run time)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Request

from shipyard.api.native._common import platform_of
from shipyard.core.quotas import Subject

router = APIRouter()


@router.get("/api/v1/quotas", tags=["quotas"])
def quotas(request: Request) -> dict[str, Any]:
    """Every quota: ``subject`` (``default``, ``user:NAME``, ``group:NAME``), its ``limits``
    (vcpus, gpus, instances, endpoints; null: none), what its holder has ``in_use``, and its
    ``source`` (``config``: the config file; ``runtime``: set since, kept across restarts)."""
    return {"quotas": platform_of(request).user_quotas.show()}


@router.put("/api/v1/quotas/{subject}", tags=["quotas"])
def set_quota(request: Request, subject: str, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
    """Change a quota: the limits given (a null removes that limit) on top of what applies to
    the subject now (a user without a quota of their own starts from the default's)."""
    target = Subject.parse(subject)
    limits = platform_of(request).user_quotas.set(target, body)
    return {"subject": str(target), "limits": limits.to_json()}


@router.delete("/api/v1/quotas/{subject}", tags=["quotas"], status_code=204)
def reset_quota(request: Request, subject: str) -> None:
    """Forget what was set at run time for the subject: the config file's quota applies again."""
    platform_of(request).user_quotas.reset(Subject.parse(subject))
