"""SageMaker Runtime: InvokeEndpoint, ``POST /endpoints/<name>/invocations``, and
InvokeEndpointWithResponseStream, ``POST /endpoints/<name>/invocations-response-stream``
(REST-JSON).

The request goes to a model server the :class:`~shipyard.services.endpoints.Router` picks (by
variant weight, or the asked TargetVariant) over a pool of keep-alive connections. Errors are
SageMaker Runtime's: ValidationError for an unknown endpoint or variant and an oversized payload,
ModelError (424) with the model server's status and message, ServiceUnavailable when no model
server answers.

A handler streams by returning an iterator (``predict_fn`` a generator, say): the model server
answers in HTTP chunks as they come. InvokeEndpoint joins them; the streaming call passes each on
at once as a ``PayloadPart`` event (AWS's event stream framing, :mod:`shipyard.api._eventstream`),
and a handler that fails midway ends the stream with a ``ModelStreamError`` event, as SageMaker's
does, where the status line was sent already.

A serverless variant's request is admitted under its MaxConcurrency (past it: ThrottlingException,
429, as SageMaker throttles) and waits for its model server when the variant is scaled to zero
(:mod:`shipyard.services._serverless`: the cold start; past its wait, ModelNotReadyException);
its time at the model is billed once it is answered.

An endpoint for inference components answers only requests naming one (InferenceComponentName,
the ``X-Amzn-SageMaker-Inference-Component`` header): they go to that component's copies
(:meth:`~shipyard.services.inference_components.InferenceComponentService.pick`).

InvokeEndpointAsync, ``POST /endpoints/<name>/async-invocations``, on an endpoint whose config has
an AsyncInferenceConfig: the request is queued (``services/async_inference.py``, in the store) and
answered 202 with its InferenceId and output and failure locations; the dispatcher
(``api/_async_invocations.py``) sends it through the same router, and the answer is written to S3.
"""

from __future__ import annotations

import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import Any
from urllib.parse import unquote

from starlette.concurrency import run_in_threadpool
from starlette.datastructures import Headers
from starlette.responses import Response, StreamingResponse
from starlette.types import Scope

from shipyard.api import _eventstream
from shipyard.api._async_invocations import AsyncDispatcher
from shipyard.api._upstream import (
    UpstreamError,
    UpstreamPool,
    UpstreamResponse,
    UpstreamStream,
    UpstreamStreamError,
)
from shipyard.compute import ModelServer
from shipyard.core.credentials import Principal
from shipyard.errors import AccessDenied, NotFoundError, ValidationError
from shipyard.services import Platform
from shipyard.services._serverless import NotReady, StartFailed, Throttled, Ticket
from shipyard.services.async_inference import KIND as ASYNC_KIND
from shipyard.services.async_inference import AsyncInferenceService
from shipyard.services.endpoints import LiveVariant, NoRoute
from shipyard.services.logs import COMPONENTS_GROUP, ENDPOINTS_GROUP
from shipyard.store import ResourceRepository

_FORWARDED = ("content-type", "accept", "x-amzn-sagemaker-custom-attributes")
COMPONENT_HEADER = "x-amzn-sagemaker-inference-component"  # InferenceComponentName
TARGET_VARIANT = "x-amzn-sagemaker-target-variant"
_STREAM_ACCEPT = "x-amzn-sagemaker-accept"
# The request headers the runtime reads, found in one pass over the raw headers (every request).
_READ = frozenset(name.encode() for name in (*_FORWARDED, _STREAM_ACCEPT, TARGET_VARIANT, COMPONENT_HEADER))
_STREAM_SUFFIX = "/invocations-response-stream"
_ASYNC_SUFFIX = "/async-invocations"
EVENT_STREAM = "application/vnd.amazon.eventstream"


_ENDPOINT_NAME = re.compile(r"[a-zA-Z0-9](-*[a-zA-Z0-9])*")  # botocore's EndpointName, at most 63


def is_invocation(method: str, path: str) -> bool:
    """InvokeEndpoint, InvokeEndpointWithResponseStream or InvokeEndpointAsync."""
    return (
        method == "POST"
        and path.startswith("/endpoints/")
        and (path.endswith("/invocations") or path.endswith(_STREAM_SUFFIX) or path.endswith(_ASYNC_SUFFIX))
    )


def is_async_invocation(path: str) -> bool:
    return path.endswith(_ASYNC_SUFFIX)


def endpoint_name(path: str) -> str:
    """The endpoint a runtime call names: the second segment of its raw path, decoded once.
    The authorization layer (api/_access.py) and the call itself read it here, so the endpoint
    authorized is the endpoint invoked (decoding twice would let ``vic%2574im`` pass as
    ``vic%74im`` and reach ``victim``)."""
    parts = path.split("/")
    return unquote(parts[2], errors="replace") if len(parts) >= 4 else ""


def request_headers(scope: Scope) -> dict[str, str]:
    """The headers the runtime reads (:data:`_READ`), each its first value as Starlette's
    ``Headers.get`` gives it, read in one pass over the request's raw headers."""
    found: dict[str, str] = {}
    for name, value in scope["headers"]:
        if name in _READ:
            found.setdefault(name.decode("latin-1"), value.decode("latin-1"))
    return found


class _Answer(Response):
    """A model's answer as it goes to the client: status, body and raw headers as given (no
    header parsing or copying per request)."""

    def __init__(self, body: bytes, raw_headers: list[tuple[bytes, bytes]]) -> None:
        self.status_code = 200
        self.background = None
        self.body = body
        self.raw_headers = raw_headers


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
        self._async = AsyncDispatcher(
            AsyncInferenceService(
                ResourceRepository(platform.db, ASYNC_KIND, "Asynchronous inference request"),
                platform.endpoints,
                platform.endpoint_configs,
                platform.objects,
                platform.identity,
                endpoints_dir=platform.settings.data_dir / "endpoints",
            ),
            self._route_async,
            self._record,
        )

    def start(self) -> None:
        """Start the asynchronous inference queue (in the server's event loop, with the platform's
        background work)."""
        self._async.start()

    async def close(self) -> None:
        await self._async.close()
        await self._pool.close()

    async def invoke(
        self,
        scope: Scope,
        read_body: Callable[[], Awaitable[bytes]],
        request_id: str,
        region: str,
        principal: Principal | None = None,
    ) -> Response:
        """Answer the runtime call ``scope`` makes, its body read (within its limit, api/_body.py)
        by ``read_body`` once its endpoint's name is known to be valid."""
        started = time.perf_counter()
        name = endpoint_name((scope.get("raw_path") or scope["path"].encode()).decode("latin-1"))
        if len(name) > 63 or not _ENDPOINT_NAME.fullmatch(name):
            return runtime_error(
                "ValidationError",
                f"Endpoint name {name!r} is not valid: at most 63 letters, digits and hyphens ({_ENDPOINT_NAME.pattern})",
                400,
                request_id,
            )
        body = await read_body()  # PayloadTooLarge past the limit
        headers = request_headers(scope)
        routed = self._route(name, headers, request_id)
        path: str = scope["path"]
        if is_async_invocation(path):  # queued even while no model server answers (503)
            if isinstance(routed, Response) and routed.status_code != 503:
                return routed
            caller = principal or Principal.root(self._platform.settings.account_id)
            return await self._invoke_async(scope, name, body, caller, request_id)
        if isinstance(routed, Response):
            return routed
        variant, server = routed
        ticket: Ticket | None = None
        if variant.serverless is not None:
            admitted = await self._serverless(name, variant, request_id)
            if isinstance(admitted, Response):
                return admitted
            ticket, server = admitted, admitted.server
        if path.endswith(_STREAM_SUFFIX):
            return await self._invoke_stream(
                headers, name, body, variant, server, request_id, region, started, ticket
            )
        server.in_flight += 1
        sent = time.perf_counter()
        if ticket is not None:
            ticket.sent()
        try:
            answer = await self._pool.post(
                server.host, server.port, "/invocations", body, _forwarded(headers, server)
            )
        except UpstreamError as exc:
            return _no_answer(variant, exc, request_id)
        finally:
            server.in_flight -= 1
            if ticket is not None:
                ticket.end(request_id)
        model_seconds = time.perf_counter() - sent
        response = self._answer(answer, variant.name, server, name, request_id, region)
        self._record(name, variant.name, answer.status, started, model_seconds)
        return response

    async def _serverless(self, name: str, variant: LiveVariant, request_id: str) -> Ticket | Response:
        """Admit a request to a serverless variant and give it a model server (a cold start when
        the variant is scaled to zero), or SageMaker's error that says why not."""
        try:
            return await self._platform.endpoints.serverless.acquire(name, variant)
        except Throttled as exc:
            return runtime_error("ThrottlingException", exc.message, 429, request_id)
        except NotReady as exc:
            return runtime_error("ModelNotReadyException", exc.message, 429, request_id)
        except StartFailed as exc:
            return runtime_error("ServiceUnavailable", exc.message, 503, request_id)

    def _route(
        self, name: str, headers: Mapping[str, str], request_id: str
    ) -> tuple[LiveVariant, ModelServer] | Response:
        """The variant and model server a request goes to, or the error that says why none."""
        account = self._platform.settings.account_id
        endpoints = self._platform.endpoints
        try:
            component = headers.get(COMPONENT_HEADER)
            if component:  # an inference component's copies (services/inference_components.py)
                return endpoints.components.pick(name, component)
            return endpoints.router.pick(name, headers.get(TARGET_VARIANT))
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

    async def _invoke_async(
        self, scope: Scope, name: str, body: bytes, principal: Principal, request_id: str
    ) -> Response:
        """InvokeEndpointAsync: queued (``api/_async_invocations.py`` sends it on), answered 202
        with where its answer will be."""
        headers = {k.lower(): v for k, v in Headers(scope=scope).items()}
        try:
            invocation = await run_in_threadpool(self._async.service.submit, name, headers, body, principal)
        except AccessDenied as exc:
            return runtime_error("AccessDeniedException", exc.message, 403, request_id)
        except ValidationError as exc:
            return runtime_error("ValidationError", exc.message, 400, request_id)
        self._async.enqueue(invocation)
        out = {"X-Amzn-SageMaker-OutputLocation": invocation.output_location, "x-amzn-RequestId": request_id}
        if invocation.failure_location is not None:
            out["X-Amzn-SageMaker-FailureLocation"] = invocation.failure_location
        return Response(
            json.dumps({"InferenceId": invocation.inference_id}),
            202,
            headers=out,
            media_type="application/json",
        )

    def _route_async(self, name: str) -> tuple[LiveVariant, ModelServer] | str:
        """A queued request's model server (as InvokeEndpoint picks one), or why there is none."""
        routed = self._route(name, {}, "")
        if isinstance(routed, Response):
            return str(json.loads(bytes(routed.body))["message"])
        return routed

    async def _invoke_stream(
        self,
        headers: Mapping[str, str],
        name: str,
        body: bytes,
        variant: LiveVariant,
        server: ModelServer,
        request_id: str,
        region: str,
        started: float,
        ticket: Ticket | None = None,
    ) -> Response:
        """InvokeEndpointWithResponseStream: the model server's chunks as PayloadPart events, sent
        on as they arrive. Before the first, an error is an ordinary error answer; after it, an
        exception event ends the stream."""
        server.in_flight += 1
        sent = time.perf_counter()
        if ticket is not None:
            ticket.sent()
        exits = contextlib.AsyncExitStack()

        async def done(status: int | None) -> None:
            await exits.aclose()  # the connection back to the pool when the answer was read through
            server.in_flight -= 1
            if ticket is not None:
                ticket.end(request_id)
            if status is not None:
                self._record(name, variant.name, status, started, time.perf_counter() - sent)

        try:
            upstream: UpstreamStream = await exits.enter_async_context(
                self._pool.stream(server.host, server.port, "/invocations", body, _forwarded(headers, server))
            )
            if upstream.status != 200:  # failed before its first part: answered as InvokeEndpoint's
                try:
                    text = await upstream.read()
                except UpstreamStreamError as exc:
                    text = str(exc).encode()
                await done(upstream.status)
                answer = UpstreamResponse(upstream.status, upstream.headers, text)
                return self._answer(answer, variant.name, server, name, request_id, region)
        except UpstreamError as exc:
            await done(None)
            return _no_answer(variant, exc, request_id)
        except BaseException:
            await done(None)
            raise

        async def events() -> AsyncIterator[bytes]:
            status = 200
            try:
                async for part in upstream.parts():
                    yield _eventstream.payload_part(part)
            except UpstreamStreamError as exc:  # the handler raised after its first chunk
                status = 500
                yield _eventstream.stream_exception(
                    "ModelStreamError", f"The model's handler failed midway: {exc}", ErrorCode="StreamBroken"
                )
            except UpstreamError as exc:  # the model server went away, or went quiet past the timeout
                status = 500
                yield _eventstream.stream_exception(
                    "ModelStreamError", f"The model server's stream broke: {exc}", ErrorCode="StreamBroken"
                )
            finally:  # also when the client went away midway (the model server's connection closes)
                await done(status)

        out = {
            "X-Amzn-SageMaker-Content-Type": upstream.headers.get("content-type", "application/json"),
            "x-Amzn-Invoked-Production-Variant": variant.name,
            "x-amzn-RequestId": request_id,
        }
        if custom := upstream.headers.get("x-amzn-sagemaker-custom-attributes"):
            out["X-Amzn-SageMaker-Custom-Attributes"] = custom
        return StreamingResponse(events(), 200, headers=out, media_type=EVENT_STREAM)

    def _record(self, name: str, variant: str, status: int, started: float, model_seconds: float) -> None:
        self._platform.endpoints.metrics.record(
            name,
            variant,
            status=status,
            model_us=model_seconds * 1e6,
            overhead_us=(time.perf_counter() - started - model_seconds) * 1e6,
        )

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
            folder = server.instance_dir
            stream, group = f"{variant}/{folder.name}", f"{ENDPOINTS_GROUP}{name}"
            if folder.parent.parent.name == "components":  # an inference component's copy
                stream, group = (
                    f"{folder.parents[2].name}/{folder.name}",
                    f"{COMPONENTS_GROUP}{folder.parent.name}",
                )
            return runtime_error(
                "ModelError",
                f"Received {'client' if 400 <= answer.status < 500 else 'server'} error ({answer.status}) "
                f'from model with message "{answer.text}". '
                f"See the log stream {stream} of log group {group}.",
                424,
                request_id,
                OriginalStatusCode=answer.status,
                OriginalMessage=answer.text,
                LogStreamArn=f"arn:aws:logs:{region}:{account}:log-group:{group}",
            )
        answered = answer.headers
        raw = [
            # as the model gave it
            (b"content-type", answered.get("content-type", "application/json").encode("latin-1")),
            (b"x-amzn-invoked-production-variant", variant.encode("latin-1")),
            (b"x-amzn-requestid", request_id.encode("latin-1")),
        ]
        if custom := answered.get("x-amzn-sagemaker-custom-attributes"):
            raw.append((b"x-amzn-sagemaker-custom-attributes", custom.encode("latin-1")))
        raw.append((b"content-length", b"%d" % len(answer.body)))
        return _Answer(answer.body, raw)


def _forwarded(headers: Mapping[str, str], server: ModelServer) -> dict[str, str]:
    """The request's headers a model server reads, and the server's own (its secret). The
    streaming call names its Accept ``X-Amzn-SageMaker-Accept``."""
    forwarded = {k: v for k in _FORWARDED if (v := headers.get(k)) is not None}
    if (accept := headers.get(_STREAM_ACCEPT)) is not None:
        forwarded["accept"] = accept
    if server.token:
        forwarded.update(server.headers)
    return forwarded


def _no_answer(variant: LiveVariant, exc: UpstreamError, request_id: str) -> Response:
    return runtime_error(
        "ServiceUnavailable",
        f"The model server of variant {variant.name!r} did not answer: {exc}",
        503,
        request_id,
    )
