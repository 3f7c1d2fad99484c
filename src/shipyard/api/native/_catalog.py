"""/api/v1/instance-types: the instance catalog."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from shipyard.api.native._common import platform_of
from shipyard.core.catalog import JobKind

router = APIRouter()


@router.get("/api/v1/instance-types", tags=["catalog"])
def instance_types(
    request: Request,
    kind: JobKind | None = Query(None, description="Only types offered for this kind of work"),
) -> list[dict[str, Any]]:
    """The instance catalog: ml.* types with their resources and on-demand prices."""
    catalog = platform_of(request).catalog
    types = catalog.for_kind(kind) if kind is not None else list(catalog)
    return [t.to_dict() for t in types]


@router.get("/api/v1/instance-types/{name}", tags=["catalog"])
def instance_type(request: Request, name: str) -> dict[str, Any]:
    return platform_of(request).catalog.get(name).to_dict()
