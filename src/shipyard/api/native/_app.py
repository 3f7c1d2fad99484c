"""The native REST app under /api/v1: one router per resource, Shipyard's errors as JSON answers.

Routers are included in an order that keeps today's matching: ``/api/v1/{collection}/{name}/utilization``
(costs) before ``/api/v1/jobs/{kind}/{name}`` (jobs), so a GET of ``/api/v1/jobs/<kind>/utilization``
answers as it did. Every route is authorized first (``_authorization.authorize_route``: the IAM
action it amounts to; AccessDenied answers 403).
"""

from __future__ import annotations

from typing import Any

from fastapi import Depends, FastAPI, Request
from fastapi.responses import JSONResponse

import shipyard
from shipyard.api.native import (
    _budgets,
    _catalog,
    _costs,
    _endpoints,
    _jobs,
    _notebooks,
    _pipelines,
    _processing,
    _quotas,
    _registry,
    _server,
    _training,
    _transform,
    _tuning,
    _users,
)
from shipyard.api.native._authorization import authorize_route
from shipyard.errors import (
    AccessDenied,
    ConflictError,
    LimitExceededError,
    NotFoundError,
    ShipyardError,
    ValidationError,
)

ROUTERS = (
    _server.router,
    _catalog.router,
    _training.router,
    _processing.router,
    _transform.router,
    _tuning.router,
    _pipelines.router,
    _endpoints.router,
    _notebooks.router,
    _costs.router,
    _budgets.router,
    _jobs.router,
    _registry.router,
    _users.router,
    _quotas.router,
)


def create_native_app() -> FastAPI:
    app = FastAPI(
        title="Shipyard",
        version=shipyard.__version__,
        openapi_url="/api/v1/openapi.json",
        docs_url="/api/v1/docs",
        redoc_url=None,
        dependencies=[Depends(authorize_route)],  # every route: the caller may make this call
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
            else 403
            if isinstance(exc, AccessDenied)
            else 500
        )
        body: dict[str, Any] = {"error": type(exc).__name__, "message": exc.message}
        if isinstance(exc, ValidationError) and exc.field:
            body["field"] = exc.field
        return JSONResponse(body, status)

    for router in ROUTERS:
        app.include_router(router)
    return app
