"""The ASGI application: one port, several protocols (docs/architecture.md §1).

:func:`create_app` builds the app from settings without side effects; the platform (database,
object store, catalog) opens in the ASGI lifespan startup and closes at shutdown. Each request is
routed by what identifies its protocol:

=================================  ===========================================
``/api/...``                       native REST (FastAPI)
``GET /ui...`` (unsigned)          the web console (static pages reading /api)
``X-Amz-Target: SageMaker.*``      SageMaker, AWS JSON 1.1
``X-Amz-Target: <other>``          another JSON service: a clear error naming it
SigV4 scope service ``sts``/``iam`` STS / IAM, query protocol
form POST with ``Action=``         STS (unsigned query requests)
``POST /endpoints/*/invocations``  SageMaker Runtime (InvokeEndpoint)
anything else                      S3, path-style
=================================  ===========================================
"""

from __future__ import annotations

import logging
import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from shipyard.api._auth import SigV4, parse_sigv4, verify_sigv4
from shipyard.api._context import RequestContext
from shipyard.api._json import JsonApi, json_error
from shipyard.api._query import handle_query, query_error
from shipyard.api.autoscaling import autoscaling_api
from shipyard.api.logs import logs_api
from shipyard.api.monitoring import cloudwatch_api
from shipyard.api.native import create_native_app
from shipyard.api.runtime import Runtime, is_invocation
from shipyard.api.s3 import S3Api
from shipyard.api.s3._xml import error_document
from shipyard.api.sagemaker import sagemaker_api
from shipyard.config import Settings
from shipyard.errors import AuthenticationError
from shipyard.services import Platform
from shipyard.ui import ConsoleApp

log = logging.getLogger(__name__)

_UNAUTHENTICATED_PATHS = frozenset({"/api/v1/health"})


class ShipyardApp:
    """The server's ASGI callable. See the module docstring for the routing."""

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.platform: Platform | None = None
        self.native = create_native_app()
        self.console = ConsoleApp()
        self._json_apis: dict[str, JsonApi] = {}
        self._s3: S3Api | None = None
        self._runtime: Runtime | None = None

    # -- lifespan -------------------------------------------------------------------------------
    async def startup(self) -> None:
        def open_all() -> tuple[Platform, dict[str, JsonApi]]:
            platform = Platform.open(self.settings)
            try:
                instance_types = [t.name for t in platform.catalog]
                return platform, {
                    "SageMaker": sagemaker_api(instance_types),
                    "Logs_20140328": logs_api(),
                    "AnyScaleFrontendService": autoscaling_api(),
                    "GraniteServiceVersion20100801": cloudwatch_api(),
                }
            except BaseException:
                platform.close()
                raise

        platform, self._json_apis = await run_in_threadpool(open_all)
        self._s3 = S3Api(platform.objects, self.settings.region)
        self._runtime = Runtime(platform)
        self.native.state.platform = self.platform = platform
        platform.start()

    async def shutdown(self) -> None:
        if self._runtime is not None:
            await self._runtime.close()
            self._runtime = None
        if self.platform is not None:
            self.native.state.platform = None
            await run_in_threadpool(self.platform.close)
            self.platform = None

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.startup()
                except Exception as exc:
                    log.exception("Shipyard failed to start")
                    await send({"type": "lifespan.startup.failed", "message": str(exc)})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await self.shutdown()
                await send({"type": "lifespan.shutdown.complete"})
                return

    # -- requests -------------------------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        path: str = scope["path"]
        if path.startswith("/api/") and not _signed_for_s3(scope):
            if self.settings.auth_enabled and path not in _UNAUTHENTICATED_PATHS:
                denied = await self._check_native_auth(Request(scope, receive))
                if denied is not None:
                    await denied(scope, receive, send)
                    return
            await self.native(scope, receive, send)
            return
        if (
            (path == "/ui" or path.startswith("/ui/"))
            and scope["method"] in ("GET", "HEAD")
            and not _signed_for_s3(scope)
        ):
            await self.console(scope, receive, send)
            return
        request = Request(scope, receive)
        response = await self._dispatch_aws(request)
        if response.status_code >= 400 and _has_body(request):
            # The body may be unread; left on a keep-alive connection it would be taken for the
            # next request. Closing is what S3 does too.
            response.headers["connection"] = "close"
        await response(scope, receive, send)

    async def _dispatch_aws(self, request: Request) -> Response:
        request_id = uuid.uuid4().hex
        headers = request.headers
        target = headers.get("x-amz-target", "")
        try:
            sig = parse_sigv4(headers, request.query_params)
        except AuthenticationError as exc:
            return self._auth_error(target, None, exc, request_id)
        service = sig.service if sig else None
        if self.platform is None or self._s3 is None or self._runtime is None:
            return Response("Shipyard is starting", 503)
        if self.settings.auth_enabled:
            try:
                await self._verify(request, sig)
            except AuthenticationError as exc:
                return self._auth_error(target, service, exc, request_id)
        context = RequestContext(
            self.platform,
            request_id,
            sig.region if sig and sig.region else self.settings.region,
            sig.access_key_id if sig else None,
        )
        if target:
            prefix, _, operation = target.partition(".")
            api = self._json_apis.get(prefix)
            if api is not None:
                return await api.handle(request, operation, context)
            return json_error(
                "UnknownOperationException",
                f"Shipyard does not serve {target!r} (the AWS service behind X-Amz-Target {prefix!r})",
                400,
                request_id,
            )
        if service in (None, "sagemaker") and is_invocation(request.method, request.url.path):
            return await self._runtime.invoke(request, request_id, context.region)
        if service in ("sts", "iam"):
            return await handle_query(request, service, context)
        if service is None and request.method == "POST" and _is_form(headers):
            return await handle_query(request, "sts", context)
        if service not in (None, "s3"):
            return json_error(
                "UnknownOperationException",
                f"Shipyard does not serve the AWS service {service!r} (from the request's credential scope)",
                400,
                request_id,
            )
        return await self._s3.handle(request, request_id)

    async def _verify(self, request: Request, sig: SigV4 | None) -> None:
        if sig is None:
            raise AuthenticationError(
                "This server requires signed requests: configure the client with the server's "
                "access key id and secret access key"
            )
        assert self.settings.secret_access_key is not None and self.settings.access_key_id is not None
        body = None if sig.service == "s3" else await request.body()
        verify_sigv4(
            sig,
            secret=self.settings.secret_access_key,
            expected_access_key_id=self.settings.access_key_id,
            method=request.method,
            raw_path=(request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1"),
            raw_query=request.scope.get("query_string", b"").decode("latin-1"),
            headers=request.headers,
            body=body,
        )

    async def _check_native_auth(self, request: Request) -> Response | None:
        import hmac

        authorization = request.headers.get("authorization", "")
        if authorization.startswith("Bearer "):
            token = authorization.removeprefix("Bearer ").strip()
            if hmac.compare_digest(token.encode(), (self.settings.secret_access_key or "").encode()):
                return None
            return _native_denied("The bearer token is not this server's secret access key")
        try:
            sig = parse_sigv4(request.headers, request.query_params)
            await self._verify(request, sig)
        except AuthenticationError as exc:
            return _native_denied(exc.message)
        return None

    def _auth_error(
        self, target: str, service: str | None, exc: AuthenticationError, request_id: str
    ) -> Response:
        if target:
            return json_error("InvalidSignatureException", exc.message, 403, request_id)
        if service in ("sts", "iam"):
            return query_error(service, "InvalidClientTokenId", exc.message, 403, request_id)
        return Response(
            error_document("AccessDenied", exc.message, request_id), 403, media_type="application/xml"
        )


def _signed_for_s3(scope: Scope) -> bool:
    """True when an S3 client addresses a bucket that happens to be named "api"."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return b"/s3/aws4_request" in value
    return b"%2Fs3%2Faws4_request" in scope.get("query_string", b"")


def _has_body(request: Request) -> bool:
    headers = request.headers
    return "transfer-encoding" in headers or headers.get("content-length", "0") not in ("", "0")


def _is_form(headers: Any) -> bool:
    return str(headers.get("content-type", "")).startswith("application/x-www-form-urlencoded")


def _native_denied(message: str) -> Response:
    import json

    return Response(
        json.dumps({"error": "AuthenticationError", "message": message}),
        401,
        media_type="application/json",
        headers={"WWW-Authenticate": "Bearer"},
    )


def create_app(settings: Settings) -> ShipyardApp:
    """The server's ASGI app for ``settings``. Nothing is opened until the lifespan starts."""
    return ShipyardApp(settings)
