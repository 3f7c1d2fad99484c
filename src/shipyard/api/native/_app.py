"""Native REST routes: health, server info, the instance catalog, jobs, tuning, endpoints."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from fastapi import Body, FastAPI, HTTPException, Query, Request
from fastapi.responses import JSONResponse

import shipyard
from shipyard.api.native._console import add_console_routes
from shipyard.core.catalog import JobKind
from shipyard.errors import ConflictError, LimitExceededError, NotFoundError, ShipyardError, ValidationError
from shipyard.services import Platform


def _platform(request: Request) -> Platform:
    platform: Platform | None = request.app.state.platform
    if platform is None:
        raise HTTPException(503, "Shipyard is starting")
    return platform


def _job_view(platform: Platform, job: Any) -> dict[str, Any]:
    """What every kind of job shows on /api/v1: status, placement and cost (so far, while it runs)."""
    billing = job.run.billing
    cost, sagemaker_cost = _cost_of(platform, job)
    return {
        "name": job.name,
        "arn": job.arn,
        "status": job.state.status.value,
        "failure_reason": job.state.failure_reason,
        "instance_type": job.spec.instance_type,
        "instance_count": job.spec.instance_count,
        "placement": dataclasses.asdict(job.run.placement) if job.run.placement else None,
        "scaled_down": job.state.scaled_down,
        "billable_seconds": billing.billable_seconds if billing else None,
        "price_per_hour_usd": str(billing.price_per_hour_usd) if billing else None,
        "cost_usd": str(cost),
        "sagemaker_cost_usd": str(sagemaker_cost),
    }


def _cost_of(platform: Platform, job: Any) -> tuple[Decimal, Decimal]:
    """A job's cost (the site's, SageMaker's): final once it ended, else so far."""
    if job.run.billing is not None:
        return job.run.billing.cost_usd, job.run.billing.sagemaker_cost_usd
    _, so_far, sagemaker_so_far = platform.costs.resource_cost(job.kind, job.name, since=job.created)
    return so_far, sagemaker_so_far


def _step_cost(platform: Platform, step_type: str, jobs: Sequence[str]) -> tuple[Decimal, Decimal] | None:
    """What a pipeline step's jobs cost (the site's, SageMaker's); None for steps without jobs."""
    services: dict[str, Any] = {
        "Training": platform.training,
        "Processing": platform.processing,
        "Transform": platform.transform,
    }
    if step_type not in (*services, "Tuning") or not jobs:
        return None
    site, sagemaker = Decimal(0), Decimal(0)
    for name in jobs:
        if step_type == "Tuning":
            _, views = platform.tuning.describe(name)
            found = [_cost_of(platform, v.job) for v in views if v.job]
        else:
            found = [_cost_of(platform, services[step_type].describe(name))]
        site += sum((c for c, _ in found), Decimal(0))
        sagemaker += sum((m for _, m in found), Decimal(0))
    return site, sagemaker


def _when(text: str, field: str) -> Any:
    """An ISO date or time as an aware UTC datetime; ValidationError naming the field."""
    import datetime as dt

    try:
        found = dt.datetime.fromisoformat(text)
    except ValueError:
        raise ValidationError(
            f"{field} {text!r} is not an ISO date or time", field=field, value=text
        ) from None
    return found if found.tzinfo else found.replace(tzinfo=dt.UTC)


def create_native_app() -> FastAPI:
    app = FastAPI(
        title="Shipyard",
        version=shipyard.__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
    )
    app.state.platform = None

    @app.exception_handler(ShipyardError)
    async def _shipyard_error(request: Request, exc: ShipyardError) -> JSONResponse:
        status = (
            404
            if isinstance(exc, NotFoundError)
            else 409
            if isinstance(exc, ConflictError)
            else 400
            if isinstance(exc, ValidationError | LimitExceededError)
            else 500
        )
        body: dict[str, Any] = {"error": type(exc).__name__, "message": exc.message}
        if isinstance(exc, ValidationError) and exc.field:
            body["field"] = exc.field
        return JSONResponse(body, status)

    @app.get("/api/v1/health", tags=["server"])
    def health(request: Request) -> dict[str, str]:
        """200 once the server is ready to serve."""
        _platform(request)
        return {"status": "ok", "version": shipyard.__version__}

    @app.get("/api/v1/info", tags=["server"])
    def info(request: Request) -> dict[str, Any]:
        """How this server is set up."""
        settings = _platform(request).settings
        return {
            "version": shipyard.__version__,
            "data_dir": str(settings.data_dir),
            "database": _platform(request).db.dialect,
            "object_store": settings.object_store,
            "account_id": settings.account_id,
            "region": settings.region,
            "auth": settings.auth_enabled,
        }

    @app.get("/api/v1/instance-types", tags=["catalog"])
    def instance_types(
        request: Request,
        kind: JobKind | None = Query(None, description="Only types offered for this kind of work"),
    ) -> list[dict[str, Any]]:
        """The instance catalog: ml.* types with their resources and on-demand prices."""
        catalog = _platform(request).catalog
        types = catalog.for_kind(kind) if kind is not None else list(catalog)
        return [t.to_dict() for t in types]

    @app.get("/api/v1/instance-types/{name}", tags=["catalog"])
    def instance_type(request: Request, name: str) -> dict[str, Any]:
        return _platform(request).catalog.get(name).to_dict()

    @app.get("/api/v1/training-jobs/{name}", tags=["training"])
    def training_job(request: Request, name: str) -> dict[str, Any]:
        """A training job's status, placement and cost (so far, or final)."""
        job = _platform(request).training.describe(name)
        return {
            **_job_view(_platform(request), job),
            "secondary_status": job.state.secondary.value,
            "model_artifacts": job.run.model_artifacts,
        }

    @app.get("/api/v1/processing-jobs/{name}", tags=["processing"])
    def processing_job(request: Request, name: str) -> dict[str, Any]:
        """A processing job's status, placement and cost (final once it ended)."""
        return _job_view(_platform(request), _platform(request).processing.describe(name))

    @app.get("/api/v1/transform-jobs/{name}", tags=["transform"])
    def transform_job(request: Request, name: str) -> dict[str, Any]:
        """A batch transform job's status, placement and cost (final once it ended)."""
        return _job_view(_platform(request), _platform(request).transform.describe(name))

    @app.get("/api/v1/tuning-jobs/{name}", tags=["tuning"])
    def tuning_job(request: Request, name: str) -> dict[str, Any]:
        """A tuning job's trials and its cost: the sum of its training jobs' costs (so far)."""
        platform = _platform(request)
        tuning = platform.tuning
        job, views = tuning.describe(name)
        best = tuning.best(job, views)
        costs = {v.trial.job: _cost_of(platform, v.job) for v in views if v.job}
        return {
            "name": job.name,
            "arn": job.arn,
            "status": job.status.value,
            "strategy": job.spec.strategy.value,
            "objective": {"metrics": job.spec.objective_metrics, "maximize": job.spec.maximize},
            "best_training_job": best.trial.job if best else None,
            "trials": [
                {
                    "number": v.trial.number + 1,
                    "training_job": v.trial.job,
                    "status": v.status.value,
                    "definition": v.trial.definition,
                    "hyperparameters": dict(v.trial.hyperparameters),
                    "objective": v.objective,
                    "cost_usd": str(costs[v.trial.job][0]) if v.trial.job in costs else None,
                }
                for v in views
            ],
            "cost_usd": str(sum((c for c, _ in costs.values()), Decimal(0))),
            "sagemaker_cost_usd": str(sum((m for _, m in costs.values()), Decimal(0))),
        }

    @app.get("/api/v1/pipelines/{name}/executions/{execution_id}", tags=["pipelines"])
    def pipeline_execution(request: Request, name: str, execution_id: str) -> dict[str, Any]:
        """A pipeline run: its steps, each with the jobs it ran and their cost. The run's cost is
        what its own jobs cost, retries included; a step reused from the cache cost nothing here."""
        platform = _platform(request)
        pipeline = platform.pipelines.get(name)
        execution = platform.pipelines.execution(f"{pipeline.arn}/execution/{execution_id}")
        steps, site, sagemaker = [], Decimal(0), Decimal(0)
        for run in sorted(execution.steps.values(), key=lambda r: (r.started, r.name)):
            cost = None if run.cache_source else _step_cost(platform, run.type, run.jobs)
            if cost is not None:
                site, sagemaker = site + cost[0], sagemaker + cost[1]
            steps.append(
                {
                    "name": run.name,
                    "type": run.type,
                    "status": run.status.value,
                    "attempts": run.attempts,
                    "jobs": list(run.jobs),
                    "started": run.started.isoformat(),
                    "ended": run.ended.isoformat() if run.ended else None,
                    "cached_from": run.cache_source,
                    "failure_reason": run.failure_reason,
                    "metadata": dict(run.metadata),
                    "cost_usd": str(cost[0]) if cost is not None else None,
                }
            )
        return {
            "arn": execution.arn,
            "pipeline": execution.pipeline,
            "status": execution.status.value,
            "failure_reason": execution.failure_reason,
            "parameters": execution.parameter_list(),
            "created": execution.created.isoformat(),
            "ended": execution.ended.isoformat() if execution.ended else None,
            "steps": steps,
            "cost_usd": str(site),
            "sagemaker_cost_usd": str(sagemaker),
        }

    @app.get("/api/v1/training-jobs/{name}/metrics", tags=["training"])
    def training_job_metrics(request: Request, name: str) -> dict[str, Any]:
        """Every point of every metric the job's MetricDefinitions matched, in step order."""
        series = _platform(request).training.metric_series(name)
        return {
            "job": name,
            "metrics": {
                metric: [
                    {"step": p.step, "value": p.value, "timestamp": p.timestamp.isoformat()} for p in points
                ]
                for metric, points in series.items()
            },
        }

    @app.get("/api/v1/endpoints/{name}", tags=["endpoints"])
    def endpoint(request: Request, name: str) -> dict[str, Any]:
        """An endpoint, its variants (desired and serving) and its model servers."""
        endpoints = _platform(request).endpoints
        found = endpoints.get(name)
        live = {v.name: v for v in endpoints.router.variants(name)}
        seconds, cost, sagemaker_cost = _platform(request).costs.resource_cost(
            "endpoint", name, since=found.created
        )
        return {
            "name": found.name,
            "instance_seconds": round(float(seconds), 3),
            "cost_usd": str(cost),
            "sagemaker_cost_usd": str(sagemaker_cost),
            "arn": found.arn,
            "status": found.status,
            "failure_reason": found.state.get("failure_reason"),
            "config": found.state["config"],
            "variants": [
                {
                    "name": v["name"],
                    "model": v["model"],
                    "instance_type": v["instance_type"],
                    "desired_instance_count": v["instance_count"],
                    "desired_weight": v["weight"],
                    "weight": live[v["name"]].weight if v["name"] in live else None,
                    "instances": [
                        {
                            "id": s.instance_dir.name,
                            "url": s.url,
                            "alive": s.alive,
                            "in_flight": s.in_flight,
                        }
                        for s in (live[v["name"]].servers if v["name"] in live else [])
                    ],
                }
                for v in found.state["variants"]
            ],
        }

    @app.get("/api/v1/costs", tags=["costs"], response_model=None)
    def costs(
        request: Request,
        group_by: list[str] = Query(
            ["kind"], description="kind, instance_type, resource, parent, user, day, month or tag:<key>"
        ),
        start: str | None = Query(
            None, description="ISO date or time (UTC) [default: the first of this month]"
        ),
        end: str | None = Query(None, description="ISO date or time (UTC), exclusive [default: now]"),
        format: str = Query("json", description="json or csv"),
    ) -> Any:
        """Spend from the ledger in [start, end), grouped: the site's cost and SageMaker's for the same."""
        import csv
        import datetime as dt
        import io

        from fastapi.responses import Response

        now = dt.datetime.now(dt.UTC)
        begin = _when(start, "start") if start else dt.datetime(now.year, now.month, 1, tzinfo=dt.UTC)
        finish = _when(end, "end") if end else now
        if format not in ("json", "csv"):
            raise ValidationError(f"format {format!r} is not json or csv", field="format", value=format)
        rows = _platform(request).costs.report(group_by, start=begin, end=finish)
        if format == "csv":
            out = io.StringIO()
            writer = csv.writer(out)
            writer.writerow([*group_by, "unit_seconds", "cost_usd", "sagemaker_cost_usd"])
            for row in rows:
                writer.writerow(
                    [
                        *("" if row[g] is None else row[g] for g in group_by),
                        row["unit_seconds"],
                        row["cost_usd"],
                        row["sagemaker_cost_usd"],
                    ]
                )
            return Response(out.getvalue(), media_type="text/csv")
        return {
            "start": begin.isoformat(),
            "end": finish.isoformat(),
            "group_by": group_by,
            "rows": [
                {**r, "cost_usd": str(r["cost_usd"]), "sagemaker_cost_usd": str(r["sagemaker_cost_usd"])}
                for r in rows
            ],
            "total": {
                "unit_seconds": round(sum(r["unit_seconds"] for r in rows), 3),
                "cost_usd": str(sum((r["cost_usd"] for r in rows), Decimal(0))),
                "sagemaker_cost_usd": str(sum((r["sagemaker_cost_usd"] for r in rows), Decimal(0))),
            },
        }

    @app.get("/api/v1/{collection}/{name}/utilization", tags=["costs"])
    def utilization(request: Request, collection: str, name: str) -> dict[str, Any]:
        """CPU (the sum over cores, %), memory and disk (% of the instance type's) samples of a
        job's instances or an endpoint's model servers, by host."""
        kinds = {
            "training-jobs": "training",
            "processing-jobs": "processing",
            "transform-jobs": "transform",
            "endpoints": "endpoint",
        }
        if collection not in kinds:
            raise HTTPException(404, f"No {collection} here")
        platform = _platform(request)
        kind = kinds[collection]
        if kind == "endpoint":
            platform.endpoints.get(name)
        else:
            services: dict[str, Any] = {
                "training": platform.training,
                "processing": platform.processing,
                "transform": platform.transform,
            }
            services[kind].describe(name)  # a clear 404 for a job that does not exist
        hosts: dict[str, list[dict[str, Any]]] = {}
        for sample in platform.utilization.series(kind, name):
            hosts.setdefault(sample.host, []).append(sample.to_json())
        return {"name": name, "kind": kind, "hosts": hosts}

    @app.get("/api/v1/waste", tags=["costs"])
    def waste(
        request: Request,
        since: str | None = Query(None, description="Jobs ended since this ISO date [default: 30 days ago]"),
    ) -> dict[str, Any]:
        """Idle endpoints, and right-sizing suggestions for sampled jobs."""
        import datetime as dt

        platform = _platform(request)
        begin = _when(since, "since") if since else dt.datetime.now(dt.UTC) - dt.timedelta(days=30)
        return {
            "idle_endpoints": [e.to_json() for e in platform.waste.idle_endpoints()],
            "right_sizing": platform.waste.right_sizing(begin),
        }

    @app.get("/api/v1/budgets", tags=["costs"])
    def budgets(request: Request) -> list[dict[str, Any]]:
        """Every budget, with its spend this period and what running work has committed."""
        service = _platform(request).budgets
        return [service.status(b) for b in service.repository.all()]

    @app.post("/api/v1/budgets", tags=["costs"], status_code=201)
    def create_budget(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        """A budget: name, limit_usd, period (monthly or total), scope (tag key → value),
        thresholds (percentages), actions (deny, stop), notify (a webhook on this machine)."""
        service = _platform(request).budgets
        return service.status(service.create(body))

    @app.get("/api/v1/budgets/{name}", tags=["costs"])
    def budget(request: Request, name: str) -> dict[str, Any]:
        service = _platform(request).budgets
        return {
            **service.status(service.repository.get(name)),
            "alerts": [e.to_json() for e in service.events(name)],
        }

    @app.delete("/api/v1/budgets/{name}", tags=["costs"], status_code=204)
    def delete_budget(request: Request, name: str) -> None:
        _platform(request).budgets.repository.delete(name)

    @app.get("/api/v1/alerts", tags=["costs"])
    def alerts(
        request: Request, budget: str | None = None, limit: int = Query(100, ge=1, le=1000)
    ) -> list[dict[str, Any]]:
        """Budget alerts, newest first: thresholds crossed, launches denied, work stopped."""
        return [e.to_json() for e in _platform(request).budgets.events(budget, limit)]

    @app.post("/api/v1/estimates", tags=["costs"])
    def estimate(request: Request, body: dict[str, Any] = Body(...)) -> dict[str, Any]:
        """The worst case of a launch before it is made: ``{"kind": "training" | "processing" |
        "transform" | "tuning" | "endpoint", "request": <the SageMaker create request>}`` (for an
        endpoint, its configuration's request). Also the budgets that would deny it."""
        from shipyard.core import estimates

        platform = _platform(request)
        kinds = {
            "training": estimates.training,
            "processing": estimates.processing,
            "transform": estimates.transform,
            "tuning": estimates.tuning,
            "endpoint": lambda r, p: estimates.endpoint(r["ProductionVariants"], p),
        }
        kind, params = body.get("kind"), body.get("request")
        if kind not in kinds:
            raise ValidationError(f"kind {kind!r} is not one of {', '.join(kinds)}", field="kind", value=kind)
        if not isinstance(params, dict):
            raise ValidationError("request must be the create request, as JSON", field="request")
        try:
            found = kinds[kind](params, platform.costs.price)
        except (KeyError, TypeError, ValueError) as exc:
            raise ValidationError(
                f"The {kind} request cannot be reckoned: {exc!r} is missing or wrong", field="request"
            ) from None
        tags = {t["Key"]: t["Value"] for t in params.get("Tags", [])}
        return {**found.to_json(), "denied_by": platform.budgets.would_deny(found, tags)}

    @app.get("/api/v1/endpoints/{name}/metrics", tags=["endpoints"])
    def endpoint_metrics(
        request: Request,
        name: str,
        minutes: int = Query(60, ge=1, le=24 * 60),
        period: int = Query(60, ge=60, le=24 * 3600),
        variant: str | None = None,
    ) -> dict[str, Any]:
        """Invocations, errors and latencies (µs) per period, as SageMaker publishes them."""
        import time

        from shipyard.services.endpoint_metrics import COUNTS, LATENCIES

        endpoints = _platform(request).endpoints
        endpoints.get(name)
        end = time.time()
        return {
            "endpoint": name,
            "period": period,
            "metrics": {
                metric: [
                    {"timestamp": at, **stats.to_dict()}
                    for at, stats in endpoints.metrics.series(
                        name, metric, start=end - minutes * 60, end=end, period=period, variant=variant
                    )
                ]
                for metric in (*COUNTS, *LATENCIES)
            },
        }

    add_console_routes(app, _platform, _job_view)
    return app
