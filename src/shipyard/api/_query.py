"""The AWS query protocol (form-encoded POST, XML answers), which STS and IAM speak.

:func:`handle_query` reads the form (the body, and the URL's query), decodes it by the
operation's input shape in botocore's model (``Tags.member.1.Key`` into lists and structures,
numbers and booleans into their types), validates it (AWS's ``ValidationError`` in its own
words), calls the operation (api/_iam.py's :data:`~shipyard.api._iam.OPERATIONS`) in a thread and
writes its result as the output shape says, in the service's XML namespace. Domain errors become
IAM's codes, with the statuses botocore's model gives them, so ``iam.exceptions.NoSuchEntityException``
and the like catch them.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any
from urllib.parse import parse_qsl
from xml.etree import ElementTree as ET

from botocore.model import Shape
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response

from shipyard.api._context import RequestContext
from shipyard.api._iam import OPERATIONS
from shipyard.errors import (
    AccessDenied,
    ConflictError,
    LimitExceededError,
    MalformedPolicyDocument,
    NotFoundError,
    NotImplementedOperation,
    ShipyardError,
    ValidationError,
)
from shipyard.schema import ServiceSchema

_NAMESPACES = {
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
}


def query_error(service: str, code: str, message: str, status: int, request_id: str) -> Response:
    root = ET.Element("ErrorResponse", {"xmlns": _NAMESPACES.get(service, _NAMESPACES["sts"])})
    error = ET.SubElement(root, "Error")
    for tag, text in (("Type", "Sender"), ("Code", code), ("Message", message)):
        ET.SubElement(error, tag).text = text
    ET.SubElement(root, "RequestId").text = request_id
    return Response(ET.tostring(root, encoding="utf-8", xml_declaration=True), status, media_type="text/xml")


def form_params(body: bytes, query: Mapping[str, str]) -> dict[str, str]:
    """A query request's parameters: the form body's, then the URL's (which win)."""
    params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    params.update(query)
    return params


async def handle_query(request: Request, service: str, context: RequestContext) -> Response:
    params = form_params(await request.body(), request.query_params)
    action = params.get("Action", "")
    try:
        schema = ServiceSchema.load(service)
        handler = OPERATIONS.get((service, action))
        if handler is None or not schema.has_operation(action):
            raise NotImplementedOperation(service.upper(), action or "(no Action)")
        shape = schema.input_shape(action)
        decoded = decode(shape, params) if shape is not None else {}
        checked = schema.validate_input(action, decoded)
        result = await run_in_threadpool(handler, context, checked)
        return _answer(service, action, schema.output_shape(action), result, context.request_id)
    except ShipyardError as exc:
        code, status = _error_code(service, action, exc)
        return query_error(service, code, exc.message, status, context.request_id)


def _error_code(service: str, action: str, exc: ShipyardError) -> tuple[str, int]:
    """IAM's code and status for a domain error (botocore's model names them)."""
    if isinstance(exc, NotImplementedOperation):
        return "InvalidAction", 400
    if isinstance(exc, MalformedPolicyDocument):
        return "MalformedPolicyDocument", 400
    if isinstance(exc, ValidationError):
        return "ValidationError", 400
    if isinstance(exc, NotFoundError):
        return "NoSuchEntity", 404
    if isinstance(exc, ConflictError):
        return ("DeleteConflict" if action.startswith("Delete") else "EntityAlreadyExists"), 409
    if isinstance(exc, LimitExceededError):
        return "LimitExceeded", 409
    if isinstance(exc, AccessDenied):
        return "AccessDenied", 403
    return "ServiceFailure", 500


# -- decoding the form by the input shape ------------------------------------------------------------
def decode(shape: Shape, params: Mapping[str, str], prefix: str = "") -> dict[str, Any]:
    """The members of structure ``shape`` found in ``params`` under ``prefix``, as the query
    protocol serializes them; a value that does not convert is kept as text, for validation to
    name."""
    found: dict[str, Any] = {}
    for name, member in shape.members.items():
        value = _decode_value(member, params, prefix + name)
        if value is not None:
            found[name] = value
    return found


def _decode_value(shape: Shape, params: Mapping[str, str], key: str) -> Any:
    kind = shape.type_name
    if kind == "structure":
        nested = decode(shape, params, key + ".")
        return nested or None
    if kind == "list":
        flattened = shape.serialization.get("flattened", False)
        item = key if flattened else f"{key}.{shape.member.serialization.get('name', 'member')}"
        items: list[Any] = []
        while True:
            value = _decode_value(shape.member, params, f"{item}.{len(items) + 1}")
            if value is None:
                break
            items.append(value)
        if items:
            return items
        return [] if key in params else None  # absent: None, or a structure holding it never ends
    raw = params.get(key)
    if raw is None:
        return None
    if kind in ("integer", "long"):
        try:
            return int(raw)
        except ValueError:
            return raw
    if kind == "boolean":
        return {"true": True, "false": False}.get(raw.lower(), raw)
    return raw


# -- writing the answer by the output shape ----------------------------------------------------------
def _answer(
    service: str, action: str, shape: Shape | None, result: Mapping[str, Any], request_id: str
) -> Response:
    root = ET.Element(f"{action}Response", {"xmlns": _NAMESPACES[service]})
    if shape is not None:
        wrapper = ET.SubElement(root, f"{action}Result")
        _fill(wrapper, shape, result)
    metadata = ET.SubElement(root, "ResponseMetadata")
    ET.SubElement(metadata, "RequestId").text = request_id
    return Response(ET.tostring(root, encoding="utf-8", xml_declaration=True), 200, media_type="text/xml")


def _fill(node: ET.Element, shape: Shape, value: Any) -> None:
    kind = shape.type_name
    if kind == "structure":
        for name, member in shape.members.items():
            item = value.get(name) if isinstance(value, Mapping) else None
            if item is not None:
                _fill(ET.SubElement(node, name), member, item)
    elif kind == "list":
        for item in value:
            _fill(ET.SubElement(node, shape.member.serialization.get("name", "member")), shape.member, item)
    elif kind == "boolean":
        node.text = "true" if value else "false"
    elif kind == "timestamp" and isinstance(value, dt.datetime):
        node.text = value.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    else:
        node.text = str(value)
