"""/api/v1/notebook-instances: the notebook instances the caller may see, and a link to one."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from shipyard.api.native._authorization import listing
from shipyard.api.native._common import MAX_OFFSET, iso, platform_of

router = APIRouter()


@router.get("/api/v1/notebook-instances", tags=["notebooks"])
def list_notebook_instances(
    request: Request,
    owner: str | None = None,
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    limit: int = Query(50, ge=1, le=100),
) -> dict[str, Any]:
    """A page of the notebook instances the caller may see, newest first, with their status
    (of ``owner``'s, when given)."""
    notebooks = platform_of(request).notebooks

    def fetch(start: int, size: int) -> list[Any]:
        found = sorted(notebooks.repository.all(), key=lambda n: (n.created, n.name), reverse=True)
        return found[start : start + size]

    found = listing(
        request,
        fetch,
        arn_of=lambda n: n.arn,
        action="sagemaker:DescribeNotebookInstance",
        offset=offset,
        limit=limit,
        owner=owner or None,
    )
    return {
        "offset": offset,
        "owners": found.people,
        "items": [
            {
                "name": n.name,
                "owner": found.owner(n.arn),
                "status": n.status.value,
                "instance_type": n.instance_type,
                "created": iso(n.created),
                "failure_reason": n.failure_reason,
            }
            for n in found.items
        ],
    }


@router.post("/api/v1/notebook-instances/{name}/url", tags=["notebooks"])
def notebook_url(request: Request, name: str) -> dict[str, Any]:
    """A presigned link to the notebook's JupyterLab (good for 5 minutes; what
    CreatePresignedNotebookInstanceUrl answers)."""
    return {"url": platform_of(request).notebooks.presigned_url(name)}
