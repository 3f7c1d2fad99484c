"""``GET /notebooks/<name>/credentials``: a notebook instance's session credentials, in the form
the AWS SDKs' container credential provider reads (``AWS_CONTAINER_CREDENTIALS_FULL_URI`` with
``AWS_CONTAINER_AUTHORIZATION_TOKEN``), so boto3 in the notebook fetches its role's credentials
and renews them before they end, as on a SageMaker notebook instance. The token is the run's
own (services/notebooks.py); anything else answers 403."""

from __future__ import annotations

import json

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from shipyard.errors import AuthenticationError, NotFoundError
from shipyard.services import Platform

PREFIX = "/notebooks/"
SUFFIX = "/credentials"


def is_credentials_request(scope: Scope) -> bool:
    path: str = scope["path"]
    return scope["method"] == "GET" and path.startswith(PREFIX) and path.endswith(SUFFIX)


async def notebook_credentials(platform: Platform | None, scope: Scope, receive: Receive, send: Send) -> None:
    request = Request(scope, receive)
    name = scope["path"][len(PREFIX) : -len(SUFFIX)]  # decoded once already, by the ASGI server
    token = request.headers.get("authorization", "")
    if platform is None:
        response = _error(503, "ServiceUnavailable", "The server is starting")
    elif not token:
        response = _error(403, "AccessDenied", "The notebook's authorization token is missing")
    else:
        try:
            found = await run_in_threadpool(platform.notebooks.container_credentials, name, token)
        except (AuthenticationError, NotFoundError) as exc:
            response = _error(403, "AccessDenied", str(exc))
        else:
            body = {
                "AccessKeyId": found.access_key_id,
                "SecretAccessKey": found.secret_access_key,
                "Token": found.session_token,
                "Expiration": found.expiration.strftime("%Y-%m-%dT%H:%M:%SZ"),
                "RoleArn": found.principal,
            }
            response = Response(
                json.dumps(body), 200, media_type="application/json", headers={"cache-control": "no-store"}
            )
    await response(scope, receive, send)


def _error(status: int, code: str, message: str) -> Response:
    return Response(json.dumps({"Code": code, "Message": message}), status, media_type="application/json")


__all__ = ["is_credentials_request", "notebook_credentials"]
