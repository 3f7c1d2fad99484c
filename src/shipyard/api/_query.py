"""STS and IAM, which speak the AWS query protocol (form-encoded POST, XML answers).

Shipyard has no IAM of its own: every caller is presented as an assumed role
(``arn:aws:sts::<account>:assumed-role/ShipyardExecutionRole/<access key>``), which is what the
``sagemaker`` SDK's ``get_execution_role()`` requires, and ``GetRole`` answers for any role name so
that role ARNs written for AWS keep working. Roles grant nothing here; access is governed by the
server's own credentials.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from typing import Any
from urllib.parse import parse_qsl

from starlette.requests import Request
from starlette.responses import Response

from shipyard.api._context import RequestContext
from shipyard.api.s3._xml import element, leaf
from shipyard.errors import NotImplementedOperation, ValidationError

EXECUTION_ROLE = "ShipyardExecutionRole"
_NAMESPACES = {
    "sts": "https://sts.amazonaws.com/doc/2011-06-15/",
    "iam": "https://iam.amazonaws.com/doc/2010-05-08/",
}


def _document(service: str, action: str, result: list[Any], request_id: str) -> Response:
    from xml.etree import ElementTree as ET

    root = ET.Element(f"{action}Response", {"xmlns": _NAMESPACES[service]})
    root.append(element(f"{action}Result", result))
    root.append(element("ResponseMetadata", [leaf("RequestId", request_id)]))
    return Response(ET.tostring(root, encoding="utf-8", xml_declaration=True), 200, media_type="text/xml")


def query_error(service: str, code: str, message: str, status: int, request_id: str) -> Response:
    from xml.etree import ElementTree as ET

    root = ET.Element("ErrorResponse", {"xmlns": _NAMESPACES.get(service, _NAMESPACES["sts"])})
    root.append(element("Error", [leaf("Type", "Sender"), leaf("Code", code), leaf("Message", message)]))
    root.append(leaf("RequestId", request_id))  # type: ignore[arg-type]
    return Response(ET.tostring(root, encoding="utf-8", xml_declaration=True), status, media_type="text/xml")


async def handle_query(request: Request, service: str, context: RequestContext) -> Response:
    body = await request.body()
    params = dict(parse_qsl(body.decode("utf-8", "replace"), keep_blank_values=True))
    params.update(request.query_params)
    action = params.get("Action", "")
    try:
        if service == "sts" and action == "GetCallerIdentity":
            return _get_caller_identity(context)
        if service == "iam" and action == "GetRole":
            return _get_role(context, params)
        raise NotImplementedOperation(service.upper(), action or "(no Action)")
    except ValidationError as exc:
        return query_error(service, "ValidationError", exc.message, 400, context.request_id)
    except NotImplementedOperation as exc:
        return query_error(service, "InvalidAction", exc.message, 400, context.request_id)


def _get_caller_identity(context: RequestContext) -> Response:
    account = context.account_id
    session = context.principal or "shipyard"
    result = [
        leaf("Arn", f"arn:aws:sts::{account}:assumed-role/{EXECUTION_ROLE}/{session}"),
        leaf("UserId", f"AROASHIPYARD{account}:{session}"),
        leaf("Account", account),
    ]
    return _document("sts", "GetCallerIdentity", result, context.request_id)


def _get_role(context: RequestContext, params: dict[str, str]) -> Response:
    name = params.get("RoleName", "")
    if not name or len(name) > 64:
        raise ValidationError(f"RoleName must be 1-64 characters, got {name!r}", field="RoleName", value=name)
    created = dt.datetime(2024, 1, 1, tzinfo=dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
    role = element(
        "Role",
        [
            leaf("Path", "/"),
            leaf("RoleName", name),
            leaf("RoleId", "AROA" + hashlib.sha1(name.encode()).hexdigest()[:17].upper()),
            leaf("Arn", f"arn:aws:iam::{context.account_id}:role/{name}"),
            leaf("CreateDate", created),
            leaf("AssumeRolePolicyDocument", "%7B%7D"),
            leaf("MaxSessionDuration", 43200),
        ],
    )
    return _document("iam", "GetRole", [role], context.request_id)
