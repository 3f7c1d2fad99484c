"""Native routes the web console reads (and any other client may): paged job lists with totals, a
job's details and log, stop; tuning jobs; pipelines and their runs."""

from __future__ import annotations

from typing import Any

from fastapi import Body, FastAPI, Query, Request

from shipyard.core.training import TrainingJobStatus
from shipyard.errors import ValidationError
from shipyard.services import Platform
from shipyard.store import TrainingJobQuery

KINDS = {"training": "TrainingJobs", "processing": "ProcessingJobs", "transform": "TransformJobs"}
_SORTS = {"created": "CreationTime", "name": "Name", "status": "Status"}
_LOG_LINES = 1000  # at most, per call: a chatty job's log is read in pieces


def _service(platform: Platform, kind: str) -> Any:
    if kind not in KINDS:
        raise ValidationError(
            f"Unknown job kind {kind!r}: one of {', '.join(KINDS)}", field="kind", value=kind
        )
    return getattr(platform, kind)


def _time(value: Any) -> str | None:
    return value.isoformat() if value is not None else None


def add_console_routes(app: FastAPI, platform_of: Any, job_view: Any) -> None:
    @app.get("/api/v1/jobs/{kind}", tags=["jobs"])
    def list_jobs(
        request: Request,
        kind: str,
        status: str | None = None,
        name: str | None = None,
        sort: str = "created",
        order: str = "desc",
        offset: int = Query(0, ge=0),
        limit: int = Query(25, ge=1, le=100),
    ) -> dict[str, Any]:
        """A page of jobs of a kind (training, processing, transform), newest first by default,
        filtered by status and name, with the total that match."""
        service = _service(platform_of(request), kind)
        if sort not in _SORTS:
            raise ValidationError(
                f"sort {sort!r} is not one of {', '.join(_SORTS)}", field="sort", value=sort
            )
        try:
            wanted = TrainingJobStatus(status) if status else None
        except ValueError:
            raise ValidationError(
                f"status {status!r} is not a job status", field="status", value=status
            ) from None
        query = TrainingJobQuery(
            name_contains=name or None, status=wanted, sort_by=_SORTS[sort], ascending=order == "asc"
        )
        jobs = service.repository.find(query, offset=offset, limit=limit)
        return {
            "total": service.repository.count(query),
            "offset": offset,
            "items": [
                {
                    "name": j.name,
                    "status": j.state.status.value,
                    "secondary_status": j.state.secondary.value,
                    "instance_type": j.spec.instance_type,
                    "instance_count": j.spec.instance_count,
                    "created": _time(j.created),
                    "ended": _time(j.state.training_end),
                    "failure_reason": j.state.failure_reason,
                }
                for j in jobs
            ],
        }

    @app.get("/api/v1/jobs/{kind}/{name}", tags=["jobs"])
    def job(request: Request, kind: str, name: str) -> dict[str, Any]:
        """A job: status and its transitions, the request it was created with, artifacts, cost."""
        platform = platform_of(request)
        found = _service(platform, kind).describe(name)
        state = found.state
        return {
            **job_view(platform, found),
            "kind": kind,
            "created": _time(found.created),
            "ended": _time(state.training_end),
            "secondary_status": state.secondary.value,
            "transitions": [
                {
                    "status": t.status.value,
                    "start": _time(t.start),
                    "end": _time(t.end),
                    "message": t.message,
                }
                for t in state.transitions
            ],
            "request": dict(found.spec.request),
            "model_artifacts": found.run.model_artifacts,
            "has_metrics": bool(found.spec.metric_definitions),
        }

    @app.get("/api/v1/jobs/{kind}/{name}/log", tags=["jobs"])
    def job_log(
        request: Request, kind: str, name: str, host: str = "algo-1", offset: int = Query(0, ge=0)
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

    @app.post("/api/v1/jobs/{kind}/{name}/stop", tags=["jobs"])
    def stop_job(request: Request, kind: str, name: str) -> dict[str, Any]:
        """Stop a job (SIGTERM to its code, SIGKILL after the grace period)."""
        platform = platform_of(request)
        stopped = _service(platform, kind).stop(name)
        platform.scheduler.wake()
        return {"name": name, "status": stopped.state.status.value}

    @app.get("/api/v1/tuning-jobs", tags=["tuning"])
    def list_tuning_jobs(
        request: Request,
        status: str | None = None,
        name: str | None = None,
        offset: int = Query(0, ge=0),
        limit: int = Query(25, ge=1, le=100),
    ) -> dict[str, Any]:
        """A page of tuning jobs, newest first."""
        repository = platform_of(request).tuning.repository
        jobs = repository.find(name_contains=name, status=status, offset=offset, limit=limit)
        return {
            "total": repository.count(name_contains=name, status=status),
            "offset": offset,
            "items": [
                {
                    "name": j.name,
                    "status": j.status.value,
                    "strategy": j.spec.strategy.value,
                    "trials": len(j.trials),
                    "max_trials": j.spec.max_jobs,
                    "created": _time(j.created),
                    "ended": _time(j.end_time),
                }
                for j in jobs
            ],
        }

    @app.post("/api/v1/tuning-jobs/{name}/stop", tags=["tuning"])
    def stop_tuning_job(request: Request, name: str) -> dict[str, Any]:
        """Stop a tuning job and its running trials."""
        platform = platform_of(request)
        platform.tuning.stop(name)
        platform.scheduler.wake()
        return {"name": name, "status": "Stopping"}

    @app.get("/api/v1/endpoints", tags=["endpoints"])
    def list_endpoints(
        request: Request, offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=100)
    ) -> dict[str, Any]:
        """A page of endpoints, newest first, with their status and configuration."""
        repository = platform_of(request).endpoints.repository
        found = repository.find(offset=offset, limit=limit)
        return {
            "offset": offset,
            "items": [
                {
                    "name": e.name,
                    "status": e.status,
                    "config": e.state.get("config"),
                    "created": _time(e.created),
                    "failure_reason": e.state.get("failure_reason"),
                }
                for e in found
            ],
        }

    @app.get("/api/v1/pipelines", tags=["pipelines"])
    def list_pipelines(
        request: Request, offset: int = Query(0, ge=0), limit: int = Query(50, ge=1, le=100)
    ) -> dict[str, Any]:
        """A page of pipelines, newest first."""
        found = platform_of(request).pipelines.repository.find(
            prefix=None,
            created_after=None,
            created_before=None,
            sort_by="CreationTime",
            ascending=False,
            offset=offset,
            limit=limit,
        )
        return {
            "offset": offset,
            "items": [
                {
                    "name": p.name,
                    "description": p.description,
                    "created": _time(p.created),
                    "last_run": _time(p.last_run),
                }
                for p in found
            ],
        }

    @app.get("/api/v1/pipelines/{name}", tags=["pipelines"])
    def pipeline(request: Request, name: str, limit: int = Query(20, ge=1, le=100)) -> dict[str, Any]:
        """A pipeline: its steps as a graph (each step's type, what it waits for, the condition
        branch it is on), its parameters, and its newest runs."""
        from shipyard.core.pipelines import Definition, DefinitionError

        platform = platform_of(request)
        found = platform.pipelines.get(name)
        try:
            definition = Definition.parse(found.definition)
            steps = [
                {
                    "name": s.name,
                    "type": s.type,
                    "after": sorted(definition.dependencies(s.name)),
                    "branch": {"condition": s.branch[0], "outcome": s.branch[1]} if s.branch else None,
                }
                for s in definition.steps.values()
            ]
            parameters = [
                {"name": p.name, "type": p.type.value, "default": p.default}
                for p in definition.parameters.values()
            ]
            problem = None
        except DefinitionError as exc:
            steps, parameters, problem = [], [], exc.message
        runs = platform.pipelines.repository.executions(found.name, limit=limit)
        return {
            "name": found.name,
            "arn": found.arn,
            "description": found.description,
            "created": _time(found.created),
            "steps": steps,
            "parameters": parameters,
            "definition_problem": problem,
            "runs": [
                {
                    "id": r.id,
                    "status": r.status.value,
                    "created": _time(r.created),
                    "ended": _time(r.ended),
                    "failure_reason": r.failure_reason,
                }
                for r in runs
            ],
        }

    @app.get("/api/v1/model-packages", tags=["registry"])
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
                    "created": _time(p.created),
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

    @app.post("/api/v1/model-packages/{group}/{version}/approval", tags=["registry"])
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
