"""SageMaker Runtime: InvokeEndpoint, ``POST /endpoints/<name>/invocations`` (REST-JSON).

The request goes to a model server the :class:`~shipyard.services.endpoints.Router` picks (by
variant weight, or the asked TargetVariant) over a pool of keep-alive connections. Errors are
SageMaker Runtime's: ValidationError for an unknown endpoint or variant and an oversized payload,
ModelError (424) with the model server's status and message, ServiceUnavailable when no model
server answers.
"""

from __future__ import annotations

import json
import time
from typing import Any
from urllib.parse import unquote

from starlette.requests import Request
from starlette.responses import Response

from shipyard.api._upstream import UpstreamError, UpstreamPool, UpstreamResponse
from shipyard.compute import ModelServer
from shipyard.errors import NotFoundError, ValidationError
from shipyard.services import Platform
from shipyard.services.endpoints import NoRoute
from shipyard.services.logs import ENDPOINTS_GROUP

_FORWARDED = ("content-type", "accept", "x-amzn-sagemaker-custom-attributes")


def is_invocation(method: str, path: str) -> bool:
    return method == "POST" and path.startswith("/endpoints/") and path.endswith("/invocations")


def runtime_error(kind: str, message: str, status: int, request_id: str, **fields: Any) -> Response:
    """An error in SageMaker Runtime's form (``x-amzn-ErrorType`` names its kind)."""
    return Response(
        json.dumps({"message": message, "Message": message, **fields}),
        status,
        media_type="application/json",
        headers={"x-amzn-ErrorType": kind, "x-amzn-RequestId": request_id},
    )


class Runtime:
    """Holds the connection pool to the model servers (made in the server's event loop)."""

    def __init__(self, platform: Platform) -> None:
        self._platform = platform
        self._pool = UpstreamPool()

    async def close(self) -> None:
        await self._pool.close()

    async def invoke(self, request: Request, request_id: str, region: str) -> Response:
        started = time.perf_counter()
        name = unquote(request.url.path.split("/")[2])
        body = await request.body()  # within the limit (api/_body.py): PayloadTooLarge past it
        account = self._platform.settings.account_id
        headers = request.headers
        endpoints = self._platform.endpoints
        try:
            variant, server = endpoints.router.pick(name, headers.get("x-amzn-sagemaker-target-variant"))
        except NotFoundError:
            try:
                endpoint = endpoints.get(name)
            except NotFoundError:
                return runtime_error(
                    "ValidationError", f"Endpoint {name} of account {account} not found.", 400, request_id
                )
            return runtime_error(
                "ValidationError",
                f"Endpoint {name} of account {account} is {endpoint.status}, not InService.",
                400,
                request_id,
            )
        except ValidationError as exc:
            return runtime_error("ValidationError", exc.message, 400, request_id)
        except NoRoute as exc:
            return runtime_error("ServiceUnavailable", exc.message, 503, request_id)
        server.in_flight += 1
        sent = time.perf_counter()
        try:
            answer = await self._pool.post(
                server.host,
                server.port,
                "/invocations",
                body,
                {k: v for k in _FORWARDED if (v := headers.get(k)) is not None} | server.headers,
            )
        except UpstreamError as exc:
            return runtime_error(
                "ServiceUnavailable",
                f"The model server of variant {variant.name!r} did not answer: {exc}",
                503,
                request_id,
            )
        finally:
            server.in_flight -= 1
        model_seconds = time.perf_counter() - sent
        response = self._answer(answer, variant.name, server, name, request_id, region)
        endpoints.metrics.record(
            name,
            variant.name,
            status=answer.status,
            model_us=model_seconds * 1e6,
            overhead_us=(time.perf_counter() - started - model_seconds) * 1e6,
        )
        return response

    def _answer(
        self,
        answer: UpstreamResponse,
        variant: str,
        server: ModelServer,
        name: str,
        request_id: str,
        region: str,
    ) -> Response:
        account = self._platform.settings.account_id
        if answer.status != 200:
            stream = f"{variant}/{server.instance_dir.name}"
            return runtime_error(
                "ModelError",
                f"Received {'client' if 400 <= answer.status < 500 else 'server'} error ({answer.status}) "
                f'from model with message "{answer.text}". '
                f"See the log stream {stream} of log group {ENDPOINTS_GROUP}{name}.",
                424,
                request_id,
                OriginalStatusCode=answer.status,
                OriginalMessage=answer.text,
                LogStreamArn=f"arn:aws:logs:{region}:{account}:log-group:{ENDPOINTS_GROUP}{name}",
            )
        out = {
            "content-type": answer.headers.get("content-type", "application/json"),  # as the model gave it
            "x-Amzn-Invoked-Production-Variant": variant,
            "x-amzn-RequestId": request_id,
        }
        if custom := answer.headers.get("x-amzn-sagemaker-custom-attributes"):
            out["X-Amzn-SageMaker-Custom-Attributes"] = custom
        return Response(answer.body, 200, headers=out)
