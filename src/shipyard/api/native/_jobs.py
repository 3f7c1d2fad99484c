"""/api/v1/jobs/{kind}: every kind of job alike (training, processing, transform), as the
console lists them: paged lists with totals (what the caller may see, by owner if asked), a
job's details (with its owner) and log, stop."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Query, Request

from shipyard.api.native._authorization import listing, owner_of
from shipyard.api.native._common import MAX_OFFSET, iso, job_view, platform_of, status_message
from shipyard.core.training import TrainingJobStatus
from shipyard.errors import ValidationError
from shipyard.services import Platform
from shipyard.store import TrainingJobQuery

KINDS = {"training": "TrainingJobs", "processing": "ProcessingJobs", "transform": "TransformJobs"}
_SORTS = {"created": "CreationTime", "name": "Name", "status": "Status"}
_LOG_LINES = 1000  # at most, per call: a chatty job's log is read in pieces

router = APIRouter()


def _service(platform: Platform, kind: str) -> Any:
    if kind not in KINDS:
        raise ValidationError(
            f"Unknown job kind {kind!r}: one of {', '.join(KINDS)}", field="kind", value=kind
        )
    return getattr(platform, kind)


@router.get("/api/v1/jobs/{kind}", tags=["jobs"])
def list_jobs(
    request: Request,
    kind: str,
    status: str | None = None,
    name: str | None = None,
    owner: str | None = None,
    sort: str = "created",
    order: str = "desc",
    offset: int = Query(0, ge=0, le=MAX_OFFSET),
    limit: int = Query(25, ge=1, le=100),
) -> dict[str, Any]:
    """A page of jobs of a kind (training, processing, transform), newest first by default,
    filtered by status, name and owner (a user's name), with the total that match; of what the
    caller may see. ``owners``: the users the caller may filter by."""
    service = _service(platform_of(request), kind)
    if sort not in _SORTS:
        raise ValidationError(f"sort {sort!r} is not one of {', '.join(_SORTS)}", field="sort", value=sort)
    try:
        wanted = TrainingJobStatus(status) if status else None
    except ValueError:
        raise ValidationError(
            f"status {status!r} is not a job status", field="status", value=status
        ) from None
    query = TrainingJobQuery(
        name_contains=name or None, status=wanted, sort_by=_SORTS[sort], ascending=order == "asc"
    )
    found = listing(
        request,
        lambda start, size: service.repository.find(query, offset=start, limit=size),
        arn_of=lambda j: j.arn,
        action=f"sagemaker:Describe{KINDS[kind][:-1]}",
        offset=offset,
        limit=limit,
        owner=owner or None,
    )
    return {
        "total": service.repository.count(query) if found.total is None else found.total,
        "offset": offset,
        "owners": found.people,
        "items": [
            {
                "name": j.name,
                "owner": found.owner(j.arn),
                "status": j.state.status.value,
                "secondary_status": j.state.secondary.value,
                "status_message": status_message(j),
                "instance_type": j.spec.instance_type,
                "instance_count": j.spec.instance_count,
                "created": iso(j.created),
                "ended": iso(j.state.ended),
                "failure_reason": j.state.failure_reason,
            }
            for j in found.items
        ],
    }


@router.get("/api/v1/jobs/{kind}/{name}", tags=["jobs"])
def job(request: Request, kind: str, name: str) -> dict[str, Any]:
    """A job: status and its transitions, the request it was created with, artifacts, cost."""
    platform = platform_of(request)
    found = _service(platform, kind).describe(name)
    state = found.state
    return {
        **job_view(platform, found),
        "kind": kind,
        "owner": owner_of(request, found.arn),
        "created": iso(found.created),
        "ended": iso(state.ended),
        "secondary_status": state.secondary.value,
        "transitions": [
            {
                "status": t.status.value,
                "start": iso(t.start),
                "end": iso(t.end),
                "message": t.message,
            }
            for t in state.transitions
        ],
        "request": dict(found.spec.request),
        "model_artifacts": found.run.model_artifacts,
        "has_metrics": bool(found.spec.metric_definitions),
    }


@router.get("/api/v1/jobs/{kind}/{name}/log", tags=["jobs"])
def job_log(
    request: Request, kind: str, name: str, host: str = "algo-1", offset: int = Query(0, ge=0, le=MAX_OFFSET)
) -> dict[str, Any]:
    """An instance's log from byte ``offset`` on (at most 1,000 lines); ``offset`` in the
    answer is where the next call goes on. ``hosts`` lists the instances that have a log."""
    platform = platform_of(request)
    _service(platform, kind).describe(name)
    group = f"/aws/sagemaker/{KINDS[kind]}"
    streams = platform.logs.streams(group, f"{name}/")
    hosts = sorted({s.name.split("/", 1)[1].rsplit("-", 1)[0] for s in streams})
    mine = [s for s in streams if s.name.split("/", 1)[1].rsplit("-", 1)[0] == host]
    if not mine:
        return {"hosts": hosts, "lines": [], "offset": offset}
    stream = mine[-1]  # the latest attempt
    events, _, end = platform.logs.get_events(
        group, stream.name, token=f"f/{offset}", limit=_LOG_LINES, start_from_head=True
    )
    return {
        "hosts": hosts,
        "stream": stream.name,
        "lines": [{"t": e.timestamp, "m": e.message} for e in events],
        "offset": end,
    }


@router.post("/api/v1/jobs/{kind}/{name}/stop", tags=["jobs"])
def stop_job(request: Request, kind: str, name: str) -> dict[str, Any]:
    """Stop a job (SIGTERM to its code, SIGKILL after the grace period)."""
    platform = platform_of(request)
    stopped = _service(platform, kind).stop(name)
    platform.scheduler.wake()
    return {"name": name, "status": stopped.state.status.value}
