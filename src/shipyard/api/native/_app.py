"""The native REST app under /api/v1: one router per resource, Shipyard's errors as JSON answers.

Routers are included in an order that keeps today's matching: ``/api/v1/{collection}/{name}/utilization``
(costs) before ``/api/v1/jobs/{kind}/{name}`` (jobs), so a GET of ``/api/v1/jobs/<kind>/utilization``
answers as it did.
"""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse

import shipyard
from shipyard.api.native import (
    _budgets,
    _catalog,
    _costs,
    _endpoints,
    _jobs,
    _pipelines,
    _processing,
    _registry,
    _server,
    _training,
    _transform,
    _tuning,
)
from shipyard.errors import ConflictError, LimitExceededError, NotFoundError, ShipyardError, ValidationError

ROUTERS = (
    _server.router,
    _catalog.router,
    _training.router,
    _processing.router,
    _transform.router,
    _tuning.router,
    _pipelines.router,
    _endpoints.router,
    _costs.router,
    _budgets.router,
    _jobs.router,
    _registry.router,
)


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

    for router in ROUTERS:
        app.include_router(router)
    return app
