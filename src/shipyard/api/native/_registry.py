"""/api/v1/model-packages: the model registry's package versions, and their approval."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Query, Request

from shipyard.api.native._common import iso, platform_of
from shipyard.errors import ValidationError

router = APIRouter()


@router.get("/api/v1/model-packages", tags=["registry"])
def list_model_packages(
    request: Request,
    group: str | None = None,
    approval: str | None = None,
    offset: int = Query(0, ge=0),
    limit: int = Query(50, ge=1, le=100),
) -> dict[str, Any]:
    """The model registry: package versions, newest first, by group and approval status."""
    registry = platform_of(request).registry
    found = registry.packages.find(
        group=group or None,
        approval=approval or None,
        name_contains=None,
        created_after=None,
        created_before=None,
        sort_by="CreationTime",
        ascending=False,
        offset=offset,
        limit=limit,
    )
    return {
        "offset": offset,
        "groups": [g.name for g in registry.groups.find(limit=100)],
        "items": [
            {
                "arn": p.arn,
                "group": p.group,
                "version": p.version,
                "approval": p.approval,
                "created": iso(p.created),
                "model_data": [
                    c.get("ModelDataUrl")
                    for c in (p.request.get("InferenceSpecification") or {}).get("Containers", [])
                ],
                "metrics": ((p.request.get("ModelMetrics") or {}).get("ModelQuality") or {})
                .get("Statistics", {})
                .get("S3Uri"),
                "description": p.state.get("approval_description"),
            }
            for p in found
        ],
    }


@router.post("/api/v1/model-packages/{group}/{version}/approval", tags=["registry"])
def set_approval(
    request: Request, group: str, version: int, body: dict[str, Any] = Body(...)
) -> dict[str, Any]:
    """Approve or reject a package version: ``{"status": "Approved" | "Rejected" |
    "PendingManualApproval", "description": "..."}``."""
    registry = platform_of(request).registry
    status = body.get("status")
    if status not in ("Approved", "Rejected", "PendingManualApproval"):
        raise ValidationError(
            f"status {status!r} is not Approved, Rejected or PendingManualApproval",
            field="status",
            value=status,
        )
    package = registry.packages.get(group, version)
    params: dict[str, Any] = {"ModelPackageArn": package.arn, "ModelApprovalStatus": status}
    if body.get("description"):
        params["ApprovalDescription"] = str(body["description"])
    updated = registry.update_package(params)
    return {"arn": updated.arn, "approval": updated.approval}
