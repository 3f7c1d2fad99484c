"""Serverless variants: a model server started by the first request and stopped when idle.

A serverless variant is brought up as any other (its model server is started, loads its model and
answers ``GET /ping``, so that a model that cannot serve fails its endpoint), then that server is
stopped and kept as the variant's *template*: the endpoint is InService with no model server
running. :meth:`ServerlessPool.acquire` (InvokeEndpoint's, in the server's event loop) admits a
request under the variant's MaxConcurrency and gives it a model server, starting one from the
template when there is none (``ModelServers.replace``: the model's folder and environment are
ready, only the process starts); requests that come meanwhile wait for the same start, up to
:data:`COLD_START_WAIT` seconds. :meth:`ServerlessPool.tick` (the reconciler's loop) stops a
server that had no request for the site's ``serverless_idle_seconds``, drops one that died (the
next request starts another), and writes each answered request to the ledger, billed for its
compute time at the variant's memory (:meth:`~shipyard.services.costs.CostService.request_served`).
A variant with ProvisionedConcurrency gets that many warm copies from the same pass, one start at a
time (each a model server of its own folder, started as an instance is), none of them ever stopped
for idleness; a warm copy is billed while it runs, as an endpoint instance is (an interval under the
reconciler's key for it, which it closes when it stops the copy), at the variant's serverless
price; requests go to the copy with the fewest in flight.

The variant's counters live in its :class:`ServerlessState`, on the router's
:class:`~shipyard.services._router.LiveVariant`: an update that replaces the variant starts afresh.
"""

from __future__ import annotations

import asyncio
import dataclasses
import datetime as dt
import functools
import logging
import threading
import time
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, Future

from shipyard.compute import ModelServer, ModelServerError, ModelServers
from shipyard.core.catalog import JobKind
from shipyard.core.clock import Clock
from shipyard.core.serverless import ServerlessConfig, admits, should_scale_to_zero, warm_copies_missing
from shipyard.errors import ShipyardError
from shipyard.services._router import LiveVariant, Router
from shipyard.services.costs import CostService

log = logging.getLogger(__name__)
COLD_START_WAIT = 60.0  # SageMaker's invocation timeout: a request waits this long for a cold start


class Throttled(ShipyardError):
    """The variant serves MaxConcurrency requests already (SageMaker's ThrottlingException)."""


class NotReady(ShipyardError):
    """The cold start took longer than a request may wait (SageMaker's ModelNotReadyException)."""


class StartFailed(ShipyardError):
    """The model server could not be started (the reason, with its log's tail)."""


@dataclasses.dataclass(eq=False)
class ServerlessState:
    """A serverless variant in service: its config, the stopped server cold starts copy, the
    requests being served or waiting, since when it has none, and the start under way."""

    config: ServerlessConfig
    template: ModelServer
    arn: str  # the endpoint's, and its owner: what its requests are billed to
    owner: str | None = None
    active: int = 0
    idle_since: float = dataclasses.field(default_factory=time.monotonic)
    starting: Future[ModelServer] | None = None


@dataclasses.dataclass
class _Served:
    key: str
    endpoint: str
    state: ServerlessState
    started: dt.datetime
    ended: dt.datetime


class Ticket:
    """One admitted request: its model server; :meth:`sent` when it goes to the model,
    :meth:`end` (once) when it was answered or given up."""

    def __init__(
        self, pool: ServerlessPool, endpoint: str, variant: LiveVariant, server: ModelServer
    ) -> None:
        self._pool = pool
        self.endpoint = endpoint
        self.variant = variant
        self.server = server
        self._sent: tuple[dt.datetime, float] | None = None
        self._ended = False

    def sent(self) -> None:
        self._sent = (self._pool.clock.now(), time.perf_counter())

    def end(self, request_id: str) -> None:
        if self._ended:
            return
        self._ended = True
        self._pool.release(self, request_id, self._sent)


class ServerlessPool:
    """Admits serverless variants' requests and scales their model servers (module docstring)."""

    def __init__(
        self,
        router: Router,
        servers: Callable[[str], ModelServers],
        costs: CostService,
        clock: Clock,
        workers: Executor,
        *,
        startup_timeout: float,
        idle_seconds: float,
        closing: threading.Event,
    ) -> None:
        self._router = router
        self._servers = servers
        self._costs = costs
        self.clock = clock
        self._workers = workers
        self._timeout = startup_timeout
        self.idle_seconds = idle_seconds
        self._closing = closing
        self._lock = threading.Lock()  # every ServerlessState; taken before the router's
        self._served: list[_Served] = []

    # -- a request (the event loop's) ---------------------------------------------------------------
    async def acquire(self, endpoint: str, variant: LiveVariant) -> Ticket:
        """Admit a request and give it a model server, starting one when none runs.

        Raises:
            Throttled: MaxConcurrency requests are being served or waiting already.
            NotReady: the model server did not come up within :data:`COLD_START_WAIT`.
            StartFailed: it could not be started.
        """
        state = variant.serverless
        assert state is not None
        with self._lock:
            if not admits(state.active, state.config):
                raise Throttled(
                    f"The serverless variant {variant.name!r} of endpoint {endpoint!r} is serving its "
                    f"MaxConcurrency of {state.config.max_concurrency} requests; try again later"
                )
            state.active += 1
        try:
            server = await self._server(endpoint, variant, state)
        except BaseException:
            with self._lock:
                state.active -= 1
                state.idle_since = time.monotonic()
            raise
        return Ticket(self, endpoint, variant, server)

    async def _server(self, endpoint: str, variant: LiveVariant, state: ServerlessState) -> ModelServer:
        deadline = time.monotonic() + COLD_START_WAIT
        while True:
            with self._lock:
                alive = [s for s in variant.servers if s.alive]
                if alive:  # the least busy (warm copies of provisioned concurrency share the load)
                    return min(alive, key=lambda s: s.in_flight)
                launch = state.starting is None
                if launch:  # the first request to find none starts it; the others wait for it
                    state.starting = Future()
                starting = state.starting
                assert starting is not None
            if launch:  # submitted outside the lock: an inline executor runs it right here
                log.info("Endpoint %s: variant %s starts a model server (cold start)", endpoint, variant.name)
                # with provisioned concurrency (its warm copies ended), a warm copy: billed, kept
                self._workers.submit(
                    self._cold_start, endpoint, variant, state, starting, state.config.provisioned > 0
                )
            try:
                await asyncio.wait_for(
                    asyncio.shield(asyncio.wrap_future(starting)), max(0.0, deadline - time.monotonic())
                )
            except TimeoutError:
                raise NotReady(
                    f"The serverless variant {variant.name!r} of endpoint {endpoint!r} is still starting "
                    f"its model server after {COLD_START_WAIT:g} s; wait and try your request again"
                ) from None
            except ModelServerError as exc:
                raise StartFailed(
                    f"The model server of serverless variant {variant.name!r} of endpoint {endpoint!r} "
                    f"did not start: {exc}"
                ) from None
            except ShipyardError as exc:
                raise StartFailed(exc.message) from None
            except Exception as exc:  # anything else a start runs into: said, and logged
                log.error("Endpoint %s: a cold start of %s failed", endpoint, variant.name, exc_info=exc)
                raise StartFailed(
                    f"The model server of serverless variant {variant.name!r} of endpoint {endpoint!r} "
                    f"did not start: {exc}"
                ) from None

    def _cold_start(
        self,
        endpoint: str,
        variant: LiveVariant,
        state: ServerlessState,
        done: Future[ModelServer],
        warm: bool = False,
    ) -> None:
        """A worker's job: a model server from the template, healthy and in the router (``done``
        says how it went). A warm copy (``warm``) gets a folder of its own, and is billed."""
        template = state.template
        pool = self._servers(template.request.instance_type)
        try:
            if warm:
                folder = template.instance_dir.parent / f"i-{uuid.uuid4().hex[:17]}"
                folder.mkdir(parents=True)
                server = pool.start(dataclasses.replace(template.request, instance_dir=folder))
            else:
                server = pool.replace(template)
            try:
                pool.wait_healthy(
                    server,
                    self._timeout,
                    gone=lambda: self._closing.is_set() or not self._router.holds(endpoint, variant),
                )
            except BaseException:
                pool.stop(server)
                raise
            with self._lock:
                added = self._router.add_to(endpoint, variant, [server])
            if not added:  # updated or deleted meanwhile
                pool.stop(server)
                raise ModelServerError("the endpoint was updated or deleted meanwhile")
            if warm:
                self._costs.instances_started(
                    usage_key(endpoint, server),
                    kind="endpoint",
                    name=endpoint,
                    arn=state.arn,
                    instance_type=state.config.billing_type,
                    count=1,
                    work=JobKind.HOSTING,
                    at=self.clock.now(),
                    owner=state.owner,
                )
        except BaseException as exc:
            with self._lock:
                state.starting = None
            done.set_exception(exc)
            return
        with self._lock:
            state.starting = None
        done.set_result(server)

    def release(self, ticket: Ticket, request_id: str, sent: tuple[dt.datetime, float] | None) -> None:
        """The request was answered (billed when it reached the model) or given up."""
        state = ticket.variant.serverless
        assert state is not None
        now = time.monotonic()
        with self._lock:
            state.active -= 1
            state.idle_since = now
            if sent is not None:
                started, at = sent
                seconds = time.perf_counter() - at
                self._served.append(
                    _Served(
                        f"endpoint/{ticket.endpoint}/{ticket.variant.name}/request-{request_id}",
                        ticket.endpoint,
                        state,
                        started,
                        started + dt.timedelta(seconds=seconds),
                    )
                )

    # -- the reconciler's pass -----------------------------------------------------------------------
    def tick(self) -> None:
        """Stop idle model servers, drop dead ones, and bill the requests answered."""
        now = time.monotonic()
        stopping: list[ModelServer] = []
        for endpoint in self._router.names():
            for variant in self._router.variants(endpoint):
                state = variant.serverless
                if state is None:
                    continue
                with self._lock:
                    dead = [s for s in variant.servers if not s.alive]
                    idle = state.starting is None and should_scale_to_zero(
                        active=state.active,
                        idle_since=state.idle_since,
                        now=now,
                        idle_seconds=self.idle_seconds,
                        provisioned=state.config.provisioned,
                    )
                    gone = list(variant.servers) if idle else dead
                    if gone:
                        self._router.drop(endpoint, variant, gone)
                    warming = not self._closing.is_set() and warm_copies_missing(
                        state.config, running=len(variant.servers), starting=state.starting is not None
                    )
                    if warming:
                        state.starting = Future()
                        starting = state.starting
                if warming:  # submitted outside the lock: an inline executor runs it right here
                    log.info(
                        "Endpoint %s: variant %s starts a warm copy (provisioned concurrency)",
                        endpoint,
                        variant.name,
                    )
                    starting.add_done_callback(functools.partial(_said, endpoint, variant.name))
                    self._workers.submit(self._cold_start, endpoint, variant, state, starting, True)
                for server in dead:
                    self._costs.usage.close(usage_key(endpoint, server), self.clock.now())
                for server in gone:
                    if server.alive:
                        log.info(
                            "Endpoint %s: variant %s idle for %g s, its model server stops (scaled to zero)",
                            endpoint,
                            variant.name,
                            self.idle_seconds,
                        )
                        stopping.append(server)
                    else:
                        log.warning(
                            "Endpoint %s: the serverless model server of %s ended (%s); the next request "
                            "starts another",
                            endpoint,
                            variant.name,
                            server.ended,
                        )
        for server in stopping:
            self._workers.submit(self._stop, server)
        self._bill()

    def _stop(self, server: ModelServer) -> None:
        try:
            self._servers(server.request.instance_type).stop(server)
        except Exception:
            log.exception("Stopping the model server %s failed", server.instance_dir)

    def _bill(self) -> None:
        with self._lock:
            served, self._served = self._served, []
        for item in served:
            try:
                self._costs.request_served(
                    item.key,
                    name=item.endpoint,
                    arn=item.state.arn,
                    serverless=item.state.config,
                    started=item.started,
                    ended=item.ended,
                    owner=item.state.owner,
                )
            except Exception:
                log.exception("Recording a serverless request of endpoint %s failed", item.endpoint)


def _said(endpoint: str, variant: str, started: Future[ModelServer]) -> None:
    """Log a warm copy's start that failed (no request waits for it to say so; the next pass tries
    again)."""
    error = started.exception()
    if error is not None:
        log.warning("Endpoint %s: a warm copy of %s did not start: %s", endpoint, variant, error)


def usage_key(endpoint: str, server: ModelServer) -> str:
    """The ledger key of a model server's interval: the reconciler's own (``_reconciler._usage_key``),
    so that stopping a warm copy with its endpoint closes the copy's interval too."""
    return f"endpoint/{endpoint}/{server.instance_dir.parent.name}/{server.instance_dir.name}"


__all__ = [
    "COLD_START_WAIT",
    "NotReady",
    "ServerlessPool",
    "ServerlessState",
    "StartFailed",
    "Throttled",
    "Ticket",
]
