"""The asynchronous inference dispatcher: InvokeEndpointAsync's queued requests to model servers.

It runs in the server's event loop beside InvokeEndpoint, on its own connection pool. The store
holds the queue (:class:`~shipyard.services.async_inference.AsyncInferenceService`); the
dispatcher works from a copy in memory, loaded at its start and added to as requests are queued
(:meth:`AsyncDispatcher.enqueue`), so that a pass does not read the whole backlog again. Each pass
(when a request is queued or answered, and every second for endpoints coming into service and
requests expiring) asks the service for each endpoint's capacity, lets
:func:`~shipyard.core.async_inference.plan` decide, and sends what it says through the router as
InvokeEndpoint does (``route``: the runtime's). Each answer (or failure) is written by the service.
Stopping cancels the requests at model servers: they stay recorded as such, and the next start
writes their failure objects (:meth:`AsyncInferenceService.recover`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import logging
import time
from collections.abc import Callable

from starlette.concurrency import run_in_threadpool

from shipyard.api._upstream import UpstreamError, UpstreamPool
from shipyard.compute import ModelServer
from shipyard.core import async_inference as core
from shipyard.core.async_inference import INPUT_LIMIT, AsyncInvocation
from shipyard.errors import NotFoundError, ValidationError
from shipyard.services._router import LiveVariant
from shipyard.services.async_inference import AsyncInferenceService, EndpointGone
from shipyard.services.logs import ENDPOINTS_GROUP

log = logging.getLogger(__name__)

Route = Callable[[str], "tuple[LiveVariant, ModelServer] | str"]  # the server, or why none
Record = Callable[[str, str, int, float, float], None]  # endpoint, variant, status, started, model s


class AsyncDispatcher:
    def __init__(
        self, service: AsyncInferenceService, route: Route, record: Record, *, poll_seconds: float = 1.0
    ) -> None:
        self.service = service
        self._route = route
        self._record = record
        self._poll = poll_seconds
        # each request's own InvocationTimeoutSeconds bounds it; the pool's must not cut it short
        self._pool = UpstreamPool(timeout=core.TIMEOUT_RANGE[1] + 60.0)
        self._in_flight: dict[str, int] = {}
        self._queues: dict[str, dict[str, AsyncInvocation]] = {}  # endpoint → key → queued, oldest first
        self._wake = asyncio.Event()
        self._loop_task: asyncio.Task[None] | None = None
        self._requests: set[asyncio.Task[None]] = set()

    def start(self) -> None:
        if self._loop_task is None:
            self._loop_task = asyncio.get_running_loop().create_task(self._run())

    def enqueue(self, invocation: AsyncInvocation) -> None:
        """A request the service has just queued (and stored). An inline body stays in the store
        only (:meth:`AsyncInferenceService.read_input` reads it there): a backlog of them would
        hold up to 128 kB each here."""
        self._queues.setdefault(invocation.endpoint, {})[invocation.key] = _light(invocation)
        self._wake.set()

    async def close(self) -> None:
        tasks = [t for t in (self._loop_task, *self._requests) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        self._loop_task = None
        await self._pool.close()

    async def _run(self) -> None:
        try:
            lost = await run_in_threadpool(self.service.recover)
            if lost:
                log.warning("%d asynchronous inference requests were lost in a restart: failed", len(lost))
            stored = await run_in_threadpool(self.service.queued)
            for endpoint, invocations in stored.items():
                queue = self._queues.setdefault(endpoint, {})
                resumed = {i.key: _light(i) for i in invocations if i.key not in queue}
                self._queues[endpoint] = resumed | queue  # the stored ones are older
        except Exception:
            log.exception("Recovering the asynchronous inference queue failed")
        while True:
            self._wake.clear()
            try:
                await self._pass()
            except Exception:
                log.exception("An asynchronous inference pass failed")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self._poll):
                    await self._wake.wait()

    async def _pass(self) -> None:
        for endpoint, queue in list(self._queues.items()):
            if not queue:
                del self._queues[endpoint]
                continue
            in_flight = self._in_flight.get(endpoint, 0)
            try:
                capacity = await run_in_threadpool(self.service.capacity, endpoint)
            except EndpointGone as exc:
                if in_flight == 0:
                    for invocation in list(queue.values()):
                        queue.pop(invocation.key, None)
                        await run_in_threadpool(
                            self.service.fail, invocation, "EndpointUnavailable", exc.message
                        )
                continue
            plan = core.plan(
                list(queue.values()), in_flight=in_flight, capacity=capacity, now=self.service.now()
            )
            for invocation in (*plan.expired, *plan.send):
                queue.pop(invocation.key, None)
            for invocation in plan.expired:
                message = (
                    f"The request waited in the queue past its RequestTTLSeconds ({invocation.ttl_seconds} s)"
                )
                await run_in_threadpool(self.service.fail, invocation, "ExpiredInQueue", message)
            for invocation in plan.send:
                try:
                    await run_in_threadpool(self.service.begin, invocation)
                except NotFoundError:
                    continue  # forgotten meanwhile
                except Exception:
                    queue[invocation.key] = invocation  # the store did not take it: next pass
                    raise
                self._in_flight[endpoint] = self._in_flight.get(endpoint, 0) + 1
                task = asyncio.get_running_loop().create_task(self._process(invocation))
                self._requests.add(task)
                task.add_done_callback(self._requests.discard)

    async def _process(self, invocation: AsyncInvocation) -> None:
        try:
            await self._send(invocation)
        except asyncio.CancelledError:
            raise  # the server stops: recorded as at a model server, failed at the next start
        except Exception as exc:
            log.exception("Asynchronous inference %s failed", invocation.inference_id)
            await run_in_threadpool(self.service.fail, invocation, "InternalFailure", str(exc))
        finally:
            self._in_flight[invocation.endpoint] -= 1
            self._wake.set()

    async def _send(self, invocation: AsyncInvocation) -> None:
        fail = self.service.fail
        try:
            payload = await run_in_threadpool(self.service.read_input, invocation)
        except (NotFoundError, ValidationError) as exc:
            message = f"Could not read the input {invocation.input_location}: {exc}"
            await run_in_threadpool(fail, invocation, "InputNotFound", message)
            return
        routed = self._route(invocation.endpoint)
        if isinstance(routed, str):
            await run_in_threadpool(fail, invocation, "ServiceUnavailable", routed)
            return
        variant, server = routed
        headers = {
            k: v
            for k, v in (
                ("content-type", invocation.content_type),
                ("accept", invocation.accept),
                ("x-amzn-sagemaker-custom-attributes", invocation.custom_attributes),
            )
            if v is not None
        }
        started = time.perf_counter()
        server.in_flight += 1
        try:
            async with asyncio.timeout(invocation.timeout_seconds):
                answer = await self._pool.post(
                    server.host,
                    server.port,
                    "/invocations",
                    payload,
                    headers | server.headers,
                    max_bytes=INPUT_LIMIT,  # an answer as large as a request may be: 1 GB
                )
        except TimeoutError:
            message = (
                f"The model did not answer within InvocationTimeoutSeconds ({invocation.timeout_seconds} s)"
            )
            await run_in_threadpool(fail, invocation, "InvocationTimeout", message)
            return
        except UpstreamError as exc:
            message = f"The model server of variant {variant.name!r} did not answer: {exc}"
            await run_in_threadpool(fail, invocation, "ServiceUnavailable", message)
            return
        finally:
            server.in_flight -= 1
        model_seconds = time.perf_counter() - started
        self._record(invocation.endpoint, variant.name, answer.status, started, model_seconds)
        if answer.status == 200:
            content_type = answer.headers.get("content-type")
            await run_in_threadpool(self.service.succeed, invocation, content_type, answer.body)
            return
        side = "client" if 400 <= answer.status < 500 else "server"
        stream = f"{variant.name}/{server.instance_dir.name}"
        message = (
            f'Received {side} error ({answer.status}) from model with message "{answer.text}". '
            f"See the log stream {stream} of log group {ENDPOINTS_GROUP}{invocation.endpoint}."
        )
        await run_in_threadpool(
            fail, invocation, "ModelError", message, status=answer.status, response=answer.body
        )


def _light(invocation: AsyncInvocation) -> AsyncInvocation:
    return dataclasses.replace(invocation, body=None) if invocation.body is not None else invocation
