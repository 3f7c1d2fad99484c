"""AWS JSON 1.1 services (SageMaker, CloudWatch Logs): ``POST /`` with ``X-Amz-Target: <prefix>.<Op>``.

Each request body is validated against botocore's own service model before any handler sees it,
and each answer is shaped by the operation's output shape. Operations are plain functions
``(context, params) -> dict``; a valid request for an operation with no handler gets a
``NotImplementedException`` naming it, never a fake success.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Collection, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from shipyard import errors
from shipyard.api._context import RequestContext
from shipyard.schema import ServiceSchema

log = logging.getLogger(__name__)

Operation = Callable[[RequestContext, dict[str, Any]], dict[str, Any]]

_CONTENT_TYPE = "application/x-amz-json-1.1"

ErrorTypes = list[tuple[type[errors.ShipyardError], str, int]]

# Domain errors → SageMaker's error codes (the __type botocore turns into ClientError codes).
SAGEMAKER_ERRORS: ErrorTypes = [
    (errors.ValidationError, "ValidationException", 400),
    (errors.NotFoundError, "ResourceNotFound", 400),
    (errors.ConflictError, "ResourceInUse", 400),
    (errors.LimitExceededError, "ResourceLimitExceeded", 400),
    (errors.NotImplementedOperation, "NotImplementedException", 400),
    (errors.AuthenticationError, "InvalidSignatureException", 403),
]


def json_error(error_type: str, message: str, status: int, request_id: str) -> Response:
    body = json.dumps({"__type": error_type, "message": message, "Message": message})
    return Response(
        body,
        status,
        media_type=_CONTENT_TYPE,
        headers={"x-amzn-RequestId": request_id, "x-amzn-ErrorType": error_type},
    )


def error_response(exc: errors.ShipyardError, request_id: str, error_types: ErrorTypes) -> Response:
    if isinstance(exc, SerializationError):
        return json_error("SerializationException", exc.message, 400, request_id)
    for cls, error_type, status in error_types:
        if isinstance(exc, cls):
            return json_error(error_type, exc.message, status, request_id)
    return json_error("InternalFailure", exc.message, 500, request_id)


class JsonApi:
    """Validates, dispatches and shapes the calls of one AWS JSON service."""

    def __init__(
        self,
        service: str,
        schema: ServiceSchema,
        operations: dict[str, Operation],
        error_types: ErrorTypes,
        extra_enum_values: Mapping[str, Collection[str]] | None = None,
    ) -> None:
        self.service = service
        self.extra_enum_values = extra_enum_values
        self.schema = schema
        self.operations = operations
        self.error_types = error_types

    async def handle(self, request: Request, operation: str, context: RequestContext) -> Response:
        try:
            if not self.schema.has_operation(operation):
                return json_error(
                    "UnknownOperationException",
                    f"{self.service} has no operation {operation!r}",
                    400,
                    context.request_id,
                )
            params = self._parse(await request.body())
            params = self.schema.validate_input(operation, params, extra_enum_values=self.extra_enum_values)
            handler = self.operations.get(operation)
            if handler is None:
                raise errors.NotImplementedOperation(self.service, operation)
            result = await run_in_threadpool(handler, context, params)
            body = json.dumps(self.schema.shape_output(operation, result), separators=(",", ":"))
            return Response(
                body, 200, media_type=_CONTENT_TYPE, headers={"x-amzn-RequestId": context.request_id}
            )
        except errors.ShipyardError as exc:
            return error_response(exc, context.request_id, self.error_types)

    @staticmethod
    def _parse(body: bytes) -> dict[str, Any]:
        if not body.strip():
            return {}
        try:
            params = json.loads(body)
        except ValueError as exc:
            raise SerializationError(f"The request body is not valid JSON: {exc}") from None
        if not isinstance(params, dict):
            raise SerializationError("The request body must be a JSON object")
        return params


class SerializationError(errors.ValidationError):
    """A body that is not a JSON object at all."""
