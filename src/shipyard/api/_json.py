"""AWS JSON 1.1 services (SageMaker, CloudWatch Logs): ``POST /`` with ``X-Amz-Target: <prefix>.<Op>``.

Each request body is validated against botocore's own service model before any handler sees it,
and each answer is shaped by the operation's output shape. Operations are plain functions
``(context, params) -> dict``; a valid request for an operation with no handler gets a
``NotImplementedException`` naming it, never a fake success.

A body is read within the service's limit (``max_body``, api/_body.py), must be UTF-8 JSON, an
object, nested at most :data:`MAX_DEPTH` deep; a ``null`` member counts as absent (botocore never
sends one), so a handler reads ``params.get(name, default)`` and gets its default.
"""

from __future__ import annotations

import itertools
import json
import logging
import re
from collections.abc import Callable, Collection, Mapping
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from shipyard import errors
from shipyard.api._body import SMALL_JSON_LIMIT
from shipyard.api._context import RequestContext
from shipyard.schema import ServiceSchema

log = logging.getLogger(__name__)

Operation = Callable[[RequestContext, dict[str, Any]], dict[str, Any]]

_CONTENT_TYPE = "application/x-amz-json-1.1"

MAX_DEPTH = 64  # the deepest request shape served here nests 11 deep (recursive Search aside)
_STRING = re.compile(rb'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_DEPTH_STEP = {ord("["): 1, ord("{"): 1, ord("]"): -1, ord("}"): -1}
_NOT_BRACKETS = bytes(b for b in range(256) if b not in _DEPTH_STEP)
_JSON_KINDS = {list: "array", str: "string", int: "number", float: "number", bool: "boolean"}

ErrorTypes = list[tuple[type[errors.ShipyardError], str, int]]

# Domain errors → SageMaker's error codes (the __type botocore turns into ClientError codes).
SAGEMAKER_ERRORS: ErrorTypes = [
    (errors.ValidationError, "ValidationException", 400),
    (errors.NotFoundError, "ResourceNotFound", 400),
    (errors.ConflictError, "ResourceInUse", 400),
    (errors.LimitExceededError, "ResourceLimitExceeded", 400),
    (errors.NotImplementedOperation, "NotImplementedException", 400),
    (errors.AuthenticationError, "InvalidSignatureException", 403),
    (errors.AccessDenied, "AccessDeniedException", 403),
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
    if isinstance(exc, errors.PayloadTooLarge):
        return json_error("PayloadTooLargeException", exc.message, 413, request_id)
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
        *,
        max_body: int = SMALL_JSON_LIMIT,
    ) -> None:
        self.service = service
        self.max_body = max_body
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
        return parse_body(body)


def parse_body(body: bytes) -> dict[str, Any]:
    """A request body as a JSON object, its null members dropped; SerializationError otherwise."""
    if not body.strip():
        return {}
    depth = _depth(body)
    if depth > MAX_DEPTH:
        raise SerializationError(
            f"The request body nests {depth} deep: at most {MAX_DEPTH} levels of objects and arrays"
        )
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise SerializationError(
            f"The request body is not UTF-8: byte {body[exc.start]:#04x} at offset {exc.start}"
        ) from None
    try:
        params = json.loads(text)
    except (ValueError, RecursionError) as exc:
        raise SerializationError(f"The request body is not valid JSON: {exc}") from None
    if not isinstance(params, dict):
        raise SerializationError(
            f"The request body must be a JSON object, got a JSON {_JSON_KINDS.get(type(params), 'value')}: "
            f"{text.strip()[:40]!r}"
        )
    if "\\u" in text:  # only an escape can make a lone surrogate, which no UTF-8 store takes
        try:
            json.dumps(params, ensure_ascii=False).encode("utf-8")
        except UnicodeEncodeError as exc:
            raise SerializationError(
                f"The request body holds a lone UTF-16 surrogate: {exc.object[exc.start : exc.end]!r}"
            ) from None
    return _without_nulls(params)


def _depth(body: bytes) -> int:
    """How deep objects and arrays nest in ``body`` (strings skipped), without parsing it."""
    brackets = _STRING.sub(b'""', body).translate(None, _NOT_BRACKETS)
    if brackets.count(b"[") + brackets.count(b"{") <= MAX_DEPTH:
        return 0  # too few to nest too deep: the common case, no walk needed
    return max(itertools.accumulate(map(_DEPTH_STEP.__getitem__, brackets)), default=0)


def _without_nulls(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _without_nulls(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nulls(v) for v in value]
    return value


class SerializationError(errors.ValidationError):
    """A body that is not a JSON object at all."""
