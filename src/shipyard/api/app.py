"""The ASGI application: one port, several protocols (docs/architecture.md §1).

:func:`create_app` builds the app from settings without side effects; the platform (database,
object store, catalog) opens in the ASGI lifespan startup and closes at shutdown. Each request is
routed by what identifies its protocol:

=================================  ===========================================
``/api/...``                       native REST (FastAPI)
``GET /ui...`` (unsigned)          the web console (static pages reading /api)
``GET /notebooks/<n>/credentials`` a notebook instance's credentials (its run's token: api/notebooks.py)
``X-Amz-Target: SageMaker.*``      SageMaker, AWS JSON 1.1 (and Logs, CloudWatch,
                                   Auto Scaling, Cost Explorer by their prefixes)
``X-Amz-Target: <other>``          another JSON service: a clear error naming it
SigV4 scope service ``sts``/``iam`` STS / IAM, query protocol
SigV4 scope service ``ec2``        EC2 (DescribeInstances), EC2's query protocol
SigV4 scope service ``<other>``    unserved: an error in that service's protocol
form POST with ``Action=``         STS (unsigned query requests)
``POST /endpoints/*/invocations``  SageMaker Runtime (InvokeEndpoint, streamed, async)
``PUT /BatchPutMetrics`` (sagemaker) SageMaker Metrics, REST-JSON
anything else                      S3, path-style
=================================  ===========================================

Credentials are checked before a body is read where they can be (a bearer token, a missing
signature, an unknown key); bodies are read within each protocol's limit (api/_body.py) and
replayed to the handler that reads them next.
"""

from __future__ import annotations

import hmac
import json
import logging
import uuid
from typing import Any

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers, QueryParams
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import Receive, Scope, Send

from shipyard.api._access import authorize, check_session, native_denied, session_token_of, token_error
from shipyard.api._auth import SigV4, parse_sigv4, verify_sigv4
from shipyard.api._body import (
    INVOCATION_LIMIT,
    NATIVE_JSON_LIMIT,
    QUERY_LIMIT,
    SMALL_JSON_LIMIT,
    Body,
)
from shipyard.api._context import RequestContext
from shipyard.api._json import JsonApi, json_error
from shipyard.api._query import handle_query, query_error
from shipyard.api._unserved import not_served_message, service_protocol, unserved_error
from shipyard.api.autoscaling import autoscaling_api
from shipyard.api.costexplorer import cost_explorer_api
from shipyard.api.ec2 import handle_ec2
from shipyard.api.logs import logs_api
from shipyard.api.metrics import handle_metrics, is_metrics_call
from shipyard.api.monitoring import cloudwatch_api
from shipyard.api.native import create_native_app
from shipyard.api.notebooks import is_credentials_request, notebook_credentials
from shipyard.api.runtime import Runtime, is_invocation, runtime_error
from shipyard.api.s3 import BucketOwnership, S3Api
from shipyard.api.s3._xml import error_document
from shipyard.api.sagemaker import sagemaker_api
from shipyard.config import Settings
from shipyard.core.credentials import Principal, is_session_key
from shipyard.errors import AuthenticationError, InvalidPresignedUrl, PayloadTooLarge, ValidationError
from shipyard.services import Platform
from shipyard.ui import ConsoleApp

log = logging.getLogger(__name__)

_UNAUTHENTICATED_PATHS = frozenset({"/api/v1/health"})
_NO_QUERY: dict[str, str] = {}
# Headers that make a request more than an unsigned runtime call (api/_auth.py reads the first).
_SIGNED_OR_TARGETED = frozenset({b"authorization", b"x-amz-target"})


class ShipyardApp:
    """The server's ASGI callable. See the module docstring for the routing.

    ``background=False`` serves the API without starting the platform's background work (the
    scheduler, endpoints, autoscaling, costs): jobs and endpoints are recorded and wait. The
    security tests fuzz the API that way.
    """

    def __init__(self, settings: Settings, *, background: bool = True) -> None:
        self.settings = settings
        self.background = background
        self.platform: Platform | None = None
        self.native = create_native_app()
        self.console = ConsoleApp()
        self._json_apis: dict[str, JsonApi] = {}
        self._s3: S3Api | None = None
        self._runtime: Runtime | None = None
        self._root = Principal.root(settings.account_id)  # immutable: one for every request

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
                    "AWSInsightsIndexService": cost_explorer_api(),
                }
            except BaseException:
                platform.close()
                raise

        platform, self._json_apis = await run_in_threadpool(open_all)
        self._s3 = S3Api(
            platform.objects, self.settings.region, BucketOwnership(platform.identity, platform.tagging)
        )
        self._runtime = Runtime(platform)
        self.native.state.platform = self.platform = platform
        if self.background:
            platform.start()
            self._runtime.start()  # the asynchronous inference queue

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
            await self._native_call(scope, receive, send)
            return
        if (
            (path == "/ui" or path.startswith("/ui/"))
            and scope["method"] in ("GET", "HEAD")
            and not _signed_for_s3(scope)
        ):
            await self.console(scope, receive, send)
            return
        if is_credentials_request(scope) and not _signed_for_s3(scope):
            await notebook_credentials(self.platform, scope, receive, send)
            return
        if self._plain_invocation(scope):
            response = await self._invoke_unsigned(scope, receive)
        else:
            response = await self._dispatch_aws(scope, receive)
        if response.status_code >= 400 and _has_body(scope):
            # The body may be unread; left on a keep-alive connection it would be taken for the
            # next request. Closing is what S3 does too.
            response.headers["connection"] = "close"
        await response(scope, receive, send)

    async def _native_call(self, scope: Scope, receive: Receive, send: Send) -> None:
        """The native API: credentials first (a bearer token before any body is read), then the
        body within its limit, replayed to the FastAPI app, which authorizes each route for the
        caller (``scope["state"]["principal"]``: api/native/_authorization.py)."""
        body = Body(scope, receive, NATIVE_JSON_LIMIT, "native API request")
        found: Principal | Response | None = None
        try:
            if scope["path"] not in _UNAUTHENTICATED_PATHS:
                found = await self._native_principal(Request(scope, body.replay()))
            if not isinstance(found, Response):
                await body.read()
        except PayloadTooLarge as exc:
            found = _native_error(413, exc)
        if isinstance(found, Response):
            if _has_body(scope):
                found.headers["connection"] = "close"
            await found(scope, receive, send)
            return
        state = {**scope.get("state", {}), "principal": found}
        await self.native({**scope, "state": state}, body.replay(), send)

    async def _dispatch_aws(self, scope: Scope, receive: Receive) -> Response:
        request_id = uuid.uuid4().hex
        headers = Headers(scope=scope)
        target = headers.get("x-amz-target", "")
        query_string = scope.get("query_string", b"")
        try:
            sig = parse_sigv4(headers, QueryParams(query_string) if query_string else _NO_QUERY)
        except AuthenticationError as exc:
            return self._auth_error(target, None, exc, request_id)
        service = sig.service if sig else None
        if self.platform is None or self._s3 is None or self._runtime is None:
            return Response("Shipyard is starting", 503)
        protocol = _protocol(scope, headers, target, service)
        if protocol == "unknown" and service:  # its protocol, for its errors: read once, off the loop
            await run_in_threadpool(service_protocol, service)
        limit = self._body_limit(protocol, target)
        body = Body(scope, receive, *limit) if limit is not None else None
        request = Request(scope, body.replay() if body is not None else receive)
        try:
            try:
                principal = await self._verify(request, sig)
            except AuthenticationError as exc:
                refused = token_error(target, service, protocol, exc, request_id)
                return refused or self._auth_error(target, service, exc, request_id)
            region = sig.region if sig and sig.region else self.settings.region
            denied = await authorize(
                principal,
                protocol,
                request,
                target=target,
                service=service,
                region=region,
                platform=self.platform,
                request_id=request_id,
            )
            if denied is not None:
                return denied
            if body is not None:
                body.check_declared()
            context = RequestContext(
                self.platform,
                request_id,
                region,
                sig.access_key_id if sig else None,
                principal,
            )
            return await self._serve(protocol, request, target, service, context)
        except PayloadTooLarge as exc:
            return _too_large(protocol, service, exc, request_id)

    def _plain_invocation(self, scope: Scope) -> bool:
        """An unsigned InvokeEndpoint (or its streaming or asynchronous form) on a server with
        auth off: it acts as root, whom nothing is refused, so it needs none of the signature and
        authorization machinery of :meth:`_dispatch_aws` (the hop's cost is most of what the
        runtime adds to a model's own time)."""
        if (
            self.settings.auth_enabled
            or self._runtime is None
            or scope["query_string"]
            or not is_invocation(scope["method"], scope["path"])
        ):
            return False
        return _SIGNED_OR_TARGETED.isdisjoint(dict(scope["headers"]))

    async def _invoke_unsigned(self, scope: Scope, receive: Receive) -> Response:
        """What :meth:`_dispatch_aws` answers a :meth:`_plain_invocation`, without its detours."""
        assert self._runtime is not None
        request_id = uuid.uuid4().hex
        body = Body(scope, receive, INVOCATION_LIMIT, "InvokeEndpoint request")
        try:
            body.check_declared()
            return await self._runtime.invoke(scope, body.read, request_id, self.settings.region, self._root)
        except PayloadTooLarge as exc:
            return _too_large("runtime", None, exc, request_id)

    def _body_limit(self, protocol: str, target: str) -> tuple[int, str] | None:
        """The protocol's body limit and what its errors call the body; None where Shipyard does
        not read the body here (S3 streams its own; an unknown service's is never read)."""
        if protocol == "json":
            api = self._json_apis.get(target.partition(".")[0])
            return (api.max_body, f"{api.service} request") if api is not None else None
        if protocol == "runtime":
            return INVOCATION_LIMIT, "InvokeEndpoint request"
        if protocol == "metrics":
            return SMALL_JSON_LIMIT, "SageMaker Metrics request"
        if protocol in ("query", "ec2"):
            return QUERY_LIMIT, "query request"
        return None

    async def _serve(
        self, protocol: str, request: Request, target: str, service: str | None, context: RequestContext
    ) -> Response:
        assert self._s3 is not None and self._runtime is not None
        if protocol == "json":
            prefix, _, operation = target.partition(".")
            api = self._json_apis.get(prefix)
            if api is not None:
                return await api.handle(request, operation, context)
            return json_error(
                "UnknownOperationException",
                f"Shipyard does not serve {target!r} (the AWS service behind X-Amz-Target {prefix!r})",
                400,
                context.request_id,
            )
        if protocol == "runtime":
            return await self._runtime.invoke(
                request.scope, request.body, context.request_id, context.region, context.caller
            )
        if protocol == "metrics":
            return await handle_metrics(request, context)
        if protocol == "query":
            return await handle_query(request, service or "sts", context)
        if protocol == "ec2":
            return await handle_ec2(request, context)
        if protocol == "unknown":
            return unserved_error(service, not_served_message(service), context.request_id)
        return await self._s3.handle(request, context.request_id, context.caller)

    async def _verify(self, request: Request, sig: SigV4 | None) -> Principal:
        """Who the request acts as, its key checked before its body is read (verifying the
        signature of a JSON call reads the body: its hash is signed).

        A session key (a job's, ``ASIA...``) must carry its own unexpired token; a user's key
        must be active and its user enabled; the server's own key pair is the account's root.
        Each is checked with its signature, auth on or off. With auth on, nothing else is
        accepted; with auth off, any other request, signed or not, acts as root, as on a
        single-user loopback server."""
        assert self.platform is not None
        auth = self.settings.auth_enabled
        if sig is None:
            if auth:
                raise AuthenticationError(
                    "This server requires signed requests: configure the client with an access key "
                    "id and secret access key of this server"
                )
            return self._root
        key = sig.access_key_id
        secret: str
        principal: Principal
        if is_session_key(key):
            credentials = self.platform.credentials
            found = await run_in_threadpool(credentials.lookup, key)
            if found is None and not auth:
                return self._root
            session = check_session(found, key, session_token_of(request), credentials.now())
            secret = session.secret_access_key
            principal = await run_in_threadpool(self.platform.identity.for_session, session)
        elif self.settings.access_key_id is not None and hmac.compare_digest(
            key.encode(), self.settings.access_key_id.encode()
        ):
            secret = self.settings.secret_access_key or ""
            principal = self._root
        else:
            identity = self.platform.identity
            known, user = identity.authenticate_cached(key)
            if not known:
                user = await run_in_threadpool(identity.authenticate, key)
            if user is None:
                if not auth:
                    return self._root
                raise AuthenticationError(
                    f"The access key id {key!r} is not known to this server (or is inactive)"
                )
            secret, principal = user
        body = None if sig.service == "s3" else await request.body()
        verify_sigv4(
            sig,
            secret=secret,
            expected_access_key_id=key,
            method=request.method,
            raw_path=(request.scope.get("raw_path") or request.url.path.encode()).decode("latin-1"),
            raw_query=request.scope.get("query_string", b"").decode("latin-1"),
            headers=request.headers,
            body=body,
        )
        return principal

    async def _native_principal(self, request: Request) -> Principal | Response:
        """Who a native call acts as, or its refusal (401, or 403 for a job's session).

        ``Authorization: Bearer <secret>`` is the root (the settings' secret);
        ``Bearer <access key id>:<secret>`` a user's key, or the root's pair; a SigV4 signature
        is checked as on the AWS APIs. With auth off, a call without a key of this server acts as
        root; a user's key still acts as the user."""
        if self.platform is None:
            return Response(
                json.dumps({"detail": "Shipyard is starting"}), 503, media_type="application/json"
            )
        auth = self.settings.auth_enabled
        root = self._root
        authorization = request.headers.get("authorization", "")
        try:
            if authorization.startswith("Bearer "):
                token = authorization.removeprefix("Bearer ").strip()
                root_secret = self.settings.secret_access_key
                if root_secret is not None and hmac.compare_digest(token.encode(), root_secret.encode()):
                    return root
                key, colon, secret = token.partition(":")
                found = await self._bearer_principal(key, secret) if colon else None
                if found is None:
                    if not auth:
                        return root
                    return _native_denied(
                        "The bearer token is neither this server's secret access key nor an access "
                        "key id and its secret (Bearer <access key id>:<secret access key>)"
                    )
            else:
                found = await self._verify(request, parse_sigv4(request.headers, request.query_params))
        except AuthenticationError as exc:
            return _native_denied(exc.message)
        return native_denied(found) if found.session is not None else found

    async def _bearer_principal(self, key: str, secret: str) -> Principal | None:
        """The principal whose key pair ``key``/``secret`` is: the root's, a user's active key,
        or a job's session key (refused later); None when ``key`` is none of them.

        Raises:
            AuthenticationError: the key is one of them, the secret is not its own.
        """
        assert self.platform is not None
        settings = self.settings
        expected: str | None = None
        principal: Principal | None = None
        if settings.access_key_id is not None and hmac.compare_digest(
            key.encode(), settings.access_key_id.encode()
        ):
            expected, principal = settings.secret_access_key or "", Principal.root(settings.account_id)
        elif is_session_key(key):
            session = await run_in_threadpool(self.platform.credentials.lookup, key)
            if session is not None:
                expected = session.secret_access_key
                principal = await run_in_threadpool(self.platform.identity.for_session, session)
        else:
            identity = self.platform.identity
            known, user = identity.authenticate_cached(key)
            if not known:
                user = await run_in_threadpool(identity.authenticate, key)
            if user is not None:
                expected, principal = user
        if principal is None or expected is None:
            return None
        if not secret or not hmac.compare_digest(secret.encode(), expected.encode()):
            raise AuthenticationError(f"The secret access key is not the secret of the access key {key!r}")
        return principal

    def _auth_error(
        self, target: str, service: str | None, exc: AuthenticationError, request_id: str
    ) -> Response:
        if target:
            return json_error("InvalidSignatureException", exc.message, 403, request_id)
        if service in ("sts", "iam"):
            return query_error(service, "InvalidClientTokenId", exc.message, 403, request_id)
        if service == "ec2":
            return unserved_error("ec2", exc.message, request_id, status=401, code="AuthFailure")
        code, status = "AccessDenied", 403
        if isinstance(exc, InvalidPresignedUrl):  # a query S3 cannot accept: 400, as AWS answers
            code, status = "AuthorizationQueryParametersError", 400
        return Response(error_document(code, exc.message, request_id), status, media_type="application/xml")


def _signed_for_s3(scope: Scope) -> bool:
    """True when an S3 client addresses a bucket that happens to be named "api"."""
    for name, value in scope["headers"]:
        if name == b"authorization":
            return b"/s3/aws4_request" in value
    return b"%2Fs3%2Faws4_request" in scope.get("query_string", b"")


def _protocol(scope: Scope, headers: Headers, target: str, service: str | None) -> str:
    """Which protocol a request speaks (the module docstring's table): json, runtime, query,
    ec2, unknown (an AWS service Shipyard does not serve) or s3."""
    if target:
        return "json"
    if service in (None, "sagemaker") and is_invocation(scope["method"], scope["path"]):
        return "runtime"
    if service in (None, "sagemaker") and is_metrics_call(scope["method"], scope["path"]):
        return "metrics"  # SageMaker Metrics, REST-JSON (signed for sagemaker)
    if service in ("sts", "iam"):
        return "query"
    if service == "ec2":
        return "ec2"
    if service is None and scope["method"] == "POST" and _is_form(headers):
        return "query"
    if service not in (None, "s3"):
        return "unknown"
    return "s3"


def _too_large(protocol: str, service: str | None, exc: PayloadTooLarge, request_id: str) -> Response:
    if protocol == "runtime":
        return runtime_error("ValidationError", exc.message, 413, request_id)
    if protocol == "query":
        return query_error(service or "sts", "RequestEntityTooLarge", exc.message, 413, request_id)
    if protocol == "ec2":
        return unserved_error("ec2", exc.message, request_id, status=413, code="RequestEntityTooLarge")
    return json_error("PayloadTooLargeException", exc.message, 413, request_id)


def _has_body(scope: Scope) -> bool:
    headers = Headers(scope=scope)
    return "transfer-encoding" in headers or headers.get("content-length", "0") not in ("", "0")


def _is_form(headers: Any) -> bool:
    return str(headers.get("content-type", "")).startswith("application/x-www-form-urlencoded")


def _native_denied(message: str) -> Response:
    return Response(
        json.dumps({"error": "AuthenticationError", "message": message}),
        401,
        media_type="application/json",
        headers={"WWW-Authenticate": "Bearer"},
    )


def _native_error(status: int, exc: ValidationError) -> Response:
    """A native API error answered before FastAPI sees the request, in the native API's form."""
    body: dict[str, Any] = {"error": type(exc).__name__, "message": exc.message}
    if exc.field:
        body["field"] = exc.field
    return Response(json.dumps(body), status, media_type="application/json")


def create_app(settings: Settings) -> ShipyardApp:
    """The server's ASGI app for ``settings``. Nothing is opened until the lifespan starts."""
    return ShipyardApp(settings)
