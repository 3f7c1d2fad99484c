"""/api/v1/instance-types: the instance catalog."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from shipyard.api.native._common import platform_of
from shipyard.core.catalog import InstanceType, JobKind
from shipyard.core.placement import Fit, fit_here, plan
from shipyard.services import Platform

router = APIRouter()


@router.get("/api/v1/instance-types", tags=["catalog"])
def instance_types(
    request: Request,
    kind: JobKind | None = Query(None, description="Only types offered for this kind of work"),
) -> list[dict[str, Any]]:
    """The instance catalog: ml.* types with their resources and on-demand prices, and how each
    would run here (``runs_here``: ``as_is``, ``scaled`` (with less: fit-to-machine) or ``no``,
    ``here_note`` saying what or why)."""
    platform = platform_of(request)
    types = platform.catalog.for_kind(kind) if kind is not None else list(platform.catalog)
    return [_with_fit(platform, t, kind) for t in types]


@router.get("/api/v1/instance-types/{name}", tags=["catalog"])
def instance_type(
    request: Request,
    name: str,
    kind: JobKind | None = Query(None, description="How it runs for this kind of work [default: jobs]"),
) -> dict[str, Any]:
    platform = platform_of(request)
    return _with_fit(platform, platform.catalog.get(name), kind)


def _with_fit(platform: Platform, instance_type: InstanceType, kind: JobKind | None) -> dict[str, Any]:
    """How one instance runs on the backend that would run it: what its capacity and largest
    machine allow (:func:`fit_here`), and then whether the site's request for it could be met
    there (a Slurm partition whose nodes ``sinfo`` shows too small: ``no``, saying why)."""
    backends = platform.backends
    name = instance_type.name
    backend = backends.for_endpoints(name) if kind is JobKind.HOSTING else backends.for_type(name)
    fit_to_machine = platform.settings.fit_to_machine == "on"
    fit = fit_here(
        instance_type,
        backend.capacity,
        node=backend.largest_node,
        fit_to_machine=fit_to_machine,
        gpu_memory_gib=backend.largest_gpu_memory_gib,
    )
    if fit.verdict != "no":
        granted = plan(
            instance_type,
            1,
            backend.capacity,
            node=backend.largest_node,
            fit_to_machine=fit_to_machine,
            gpu_memory_gib=backend.largest_gpu_memory_gib,
        ).per_instance
        why = backend.unrunnable(name, granted)
        if why is not None:
            fit = Fit("no", why)
    return {**instance_type.to_dict(), **fit.to_dict()}
