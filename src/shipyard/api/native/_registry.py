"""/api/v1/model-packages: the model registry's package versions, and their approval."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Path, Query, Request

from shipyard.api.native._authorization import caller_of, listing
from shipyard.api.native._common import MAX_OFFSET, iso, platform_of
from shipyard.errors import ValidationError

router = APIRouter()


@router.get("/api/v1/model-packages", tags=["registry"])
def list_model_packages(
    request: Request,
    group: str | None = None,
    approval: str | None = None,
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    limit: int = Query(50, ge=1, le=100),
) -> dict[str, Any]:
    """The model registry: the package versions the caller may see, newest first, by group and
    approval status."""
    registry = platform_of(request).registry
    found = listing(
        request,
        lambda start, size: registry.packages.find(
            group=group or None,
            approval=approval or None,
            name_contains=None,
            created_after=None,
            created_before=None,
            sort_by="CreationTime",
            ascending=False,
            offset=start,
            limit=size,
        ),
        arn_of=lambda p: p.arn,
        action="sagemaker:DescribeModelPackage",
        offset=offset,
        limit=limit,
    )
    groups = registry.groups.find(limit=100)
    reach = platform_of(request).identity.reachable(caller_of(request), [g.arn for g in groups])
    return {
        "offset": offset,
        "groups": [g.name for g in groups if reach[g.arn]],
        "items": [
            {
                "arn": p.arn,
                "owner": found.owner(p.arn),
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
            for p in found.items
        ],
    }


@router.post("/api/v1/model-packages/{group}/{version}/approval", tags=["registry"])
def set_approval(
    request: Request,
    group: str,
    version: int = Path(ge=1, le=MAX_OFFSET),
    body: dict[str, Any] = Body(...),
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
