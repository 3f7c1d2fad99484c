"""The endpoint reconciler: one loop that brings live model servers to what the store says.

Each pass (:meth:`EndpointReconciler.tick`) reads every endpoint's record and asks its
:class:`~shipyard.core.hosting.EndpointState` what comes next (:class:`~shipyard.core.hosting.Step`):
bring its variants up (a new endpoint, or every endpoint after a server start), roll an update
out, rescale, or watch. Slow work (fetching a model, building its environment, waiting for
``GET /ping``, stopping a server) runs on workers; the pass only starts it and, on a later pass,
acts on how it ended: the router changes (under its lock), the usage ledger, and one write of the
record. The loop is woken when an endpoint changes or a worker finishes, and looks every half
second otherwise, which is how a model server that died is noticed and replaced.

A serverless variant's model server is started once at bring-up (it must serve), then stopped:
its requests start and stop it, through the :class:`~shipyard.services._serverless.ServerlessPool`
this loop also drives (idle model servers stopped, requests billed).
"""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import shutil
import threading
import uuid
from collections.abc import Callable
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

from shipyard.compute import ModelRequest, ModelServer, ModelServerError, ModelServers
from shipyard.core.catalog import JobKind
from shipyard.core.clock import Clock
from shipyard.core.hosting import (
    ContainerSpec,
    EndpointConfigSpec,
    EndpointState,
    ModelSpec,
    Step,
    VariantSpec,
)
from shipyard.envs import EnvironmentSpec, ImageResolver
from shipyard.errors import NotFoundError, ShipyardError
from shipyard.services._router import CapacityInstance, LiveVariant, Router
from shipyard.services._serverless import ServerlessPool, ServerlessState
from shipyard.services.costs import CostService
from shipyard.store import Resource, ResourceRepository

log = logging.getLogger(__name__)
_BUSY_POLL = 0.1  # while something is under way (workers also wake the loop when they finish)
_IDLE_POLL = 0.5  # how soon a model server that died is noticed
# With no endpoint at all, each change wakes the loop (a new endpoint or inference component): the
# poll is only a safety net, and an idle server does not read the store twice a second.
_EMPTY_POLL = 5.0
_SEEN_SECONDS = 60.0  # how often serving model servers are marked in use (bounds what a crash bills)


class DaemonExecutor(Executor):
    """Runs each job on a daemon thread of its own: a model whose environment takes minutes to
    build must not keep the server from exiting, as a ThreadPoolExecutor's workers would."""

    def submit(self, fn: Callable[..., Any], /, *args: Any, **kwargs: Any) -> Future[Any]:
        future: Future[Any] = Future()

        def run() -> None:
            if not future.set_running_or_notify_cancel():
                return
            try:
                future.set_result(fn(*args, **kwargs))
            except BaseException as exc:
                future.set_exception(exc)

        threading.Thread(target=run, name="shipyard-endpoint-worker", daemon=True).start()
        return future


@dataclasses.dataclass
class _Operation:
    """Model servers being started for one endpoint (a bring-up, a roll-out or a rescale)."""

    step: Step
    variants: tuple[VariantSpec, ...]  # what the servers are started for
    starts: list[tuple[str, Future[ModelServer]]] = dataclasses.field(default_factory=list)
    config: EndpointConfigSpec | None = None  # a roll-out's new config
    abandon: threading.Event = dataclasses.field(default_factory=threading.Event)
    deleted: bool = False  # its endpoint was deleted: servers that come up are stopped
    failure: BaseException | None = None  # the first start that failed

    def done(self) -> bool:
        return all(f.done() for _, f in self.starts)

    def started(self) -> list[tuple[str, ModelServer]]:
        """The servers that came up (of the starts that ended)."""
        return [
            (variant, f.result())
            for variant, f in self.starts
            if f.done() and not f.cancelled() and f.exception() is None
        ]


@dataclasses.dataclass
class _Replacement:
    endpoint: str
    dead: ModelServer
    future: Future[ModelServer]


@dataclasses.dataclass
class _Retiring:
    endpoint: str
    server: ModelServer
    deadline: float  # clock seconds: stopped then even with requests unanswered


class EndpointReconciler:
    """Brings each endpoint's model servers to its record (see the module docstring).

    Args:
        servers: The model servers for an instance type (``Backends.model_servers_for``).
        model: A model's spec by name (its container).
        config: An endpoint config's spec by name.
        workers: Where slow work runs (a test passes one that runs it at once).
    """

    def __init__(
        self,
        repository: ResourceRepository,
        router: Router,
        servers: Callable[[str], ModelServers],
        model: Callable[[str], ModelSpec],
        config: Callable[[str], EndpointConfigSpec],
        resolver: ImageResolver,
        costs: CostService,
        clock: Clock,
        *,
        endpoints_dir: Path,
        startup_timeout: float,
        drain_seconds: float,
        workers: Executor | None = None,
        serverless_idle_seconds: float = 300.0,
    ) -> None:
        self._repository = repository
        self._router = router
        self._servers = servers
        self._model = model
        self._config = config
        self._resolver = resolver
        self._costs = costs
        self._clock = clock
        self._dir = endpoints_dir
        self._timeout = startup_timeout
        self._drain = drain_seconds
        self._workers = self.workers = workers or DaemonExecutor()
        self._lock = threading.Lock()  # the bookkeeping below; the router has its own
        self._ops: dict[str, _Operation] = {}
        self._replacing: dict[int, _Replacement] = {}  # by id() of the dead server
        self._retiring: list[_Retiring] = []
        self._deleting: set[str] = set()
        self._last_seen = clock.now().timestamp()
        self.passes: list[Callable[[], bool]] = []  # more work each pass does (inference components)
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._watching = True  # whether any endpoint exists (its model servers are watched)
        self._thread: threading.Thread | None = None
        self.serverless = ServerlessPool(
            router,
            servers,
            costs,
            clock,
            self._workers,
            startup_timeout=startup_timeout,
            idle_seconds=serverless_idle_seconds,
            closing=self._closing,
        )

    # -- the loop ---------------------------------------------------------------------------------
    def start(self) -> None:
        self._costs.usage.close_abandoned("endpoint")  # a server that died left them open
        self._thread = threading.Thread(target=self._run, name="shipyard-endpoints", daemon=True)
        self._thread.start()

    def wake(self) -> None:
        self._wake.set()

    def _run(self) -> None:
        while not self._closing.is_set():
            busy = False
            try:
                busy = self.tick()
            except Exception:  # the loop must survive anything one pass runs into
                log.exception("Endpoint pass failed")
            self._wake.wait(_BUSY_POLL if busy else _IDLE_POLL if self._watching else _EMPTY_POLL)
            self._wake.clear()

    def tick(self) -> bool:
        """One pass over every endpoint; returns whether work is under way."""
        records = self._repository.find(limit=100_000)
        self._watching = bool(records)
        for record in records:
            with self._lock:
                if record.name in self._deleting:
                    continue
            try:
                self._reconcile(record)
            except Exception:
                log.exception("Endpoint %s: reconciling failed", record.name)
        known = {r.name for r in records}
        for name in self._router.names():  # in service, and no record: deleted behind our back
            with self._lock:
                orphan = name not in known and name not in self._deleting
            if orphan:
                self._stop_all(name)
        self._replace_dead()
        self._retire_drained()
        self.serverless.tick()
        busy = False
        for more in self.passes:
            try:
                busy = more() or busy
            except Exception:
                log.exception("An endpoint pass failed")
        self._mark_seen()
        with self._lock:
            return busy or bool(self._ops or self._replacing or self._retiring)

    def _reconcile(self, record: Resource) -> None:
        name = record.name
        with self._lock:
            op = self._ops.get(name)
        if op is not None:
            if op.done():
                with self._lock:
                    self._ops.pop(name, None)
                self._finish(record, op)
            return
        state = EndpointState.from_record(record.status, record.state)
        step = state.step(serving=self._router.serving(name))
        if step == Step.BRING_UP:
            self._begin(name, _Operation(step, state.variants))
        elif step == Step.ROLL_OUT:
            assert state.updating_to is not None
            try:
                config = self._config(state.updating_to)
            except ShipyardError as exc:
                reason = exc.message
                self._write(name, lambda s: s.update_failed(reason))
                return
            self._begin(name, _Operation(step, config.variants, config=config))
        elif step == Step.RESCALE:
            self._rescale(name, state)
        elif step == Step.FINISH_DELETE:
            self.delete(name)

    # -- starting model servers -------------------------------------------------------------------
    def _begin(self, name: str, op: _Operation) -> None:
        with self._lock:
            if name in self._deleting or self._closing.is_set():
                return
            self._ops[name] = op
        for variant in op.variants:
            # a serverless variant's model server is started once, to check that it serves
            for _ in range(1 if variant.serverless else variant.instance_count):
                future = self._workers.submit(self._start_one, name, variant, op)
                op.starts.append((variant.name, future))
                future.add_done_callback(functools.partial(self._started, op))
        if op.step == Step.BRING_UP:
            log.info("Endpoint %s: starting %d model servers", name, len(op.starts))

    def _start_one(self, name: str, variant: VariantSpec, op: _Operation) -> ModelServer:
        """A worker's job: one model server, healthy (stopped again if it is not). An instance of
        a variant for inference components is capacity only: its components' copies are the model
        servers (``inference_components.py``)."""
        folder = self._dir / name / variant.name / f"i-{uuid.uuid4().hex[:17]}"  # an instance id, as in AWS
        folder.mkdir(parents=True)
        if variant.for_components:
            return CapacityInstance(
                ModelRequest(
                    instance_dir=folder,
                    endpoint=name,
                    variant=variant.name,
                    instance_type=variant.instance_type,
                    container=ContainerSpec("", None, {}),
                    environment=EnvironmentSpec("inference components"),
                )
            )
        model = self._model(variant.model)
        request = ModelRequest(
            instance_dir=folder,
            endpoint=name,
            variant=variant.name,
            instance_type=variant.instance_type,
            container=model.container,
            environment=self._resolver.resolve(model.container.image, field="PrimaryContainer.Image"),
            memory_limit_mb=variant.serverless.memory_mb if variant.serverless else None,
        )
        if op.abandon.is_set():
            raise ModelServerError("the endpoint is being deleted")
        pool = self._servers(variant.instance_type)
        server = pool.start(request)
        try:
            pool.wait_healthy(
                server, self._timeout, gone=lambda: op.abandon.is_set() or self._closing.is_set()
            )
        except BaseException:
            pool.stop(server)
            raise
        if variant.serverless is not None:  # it serves: stopped, it is what cold starts copy
            pool.stop(server)
        return server

    def _started(self, op: _Operation, future: Future[ModelServer]) -> None:
        """A start ended (on its worker): the first failure abandons the others; a server that came
        up for a deleted endpoint is stopped."""
        error = ModelServerError("cancelled") if future.cancelled() else future.exception()
        failed = error is not None
        with self._lock:
            if error is not None and op.failure is None and not op.abandon.is_set():
                op.failure = error
                op.abandon.set()
            stop = op.deleted and not failed
        if stop:
            self._stop(future.result())
        self.wake()

    def _finish(self, record: Resource, op: _Operation) -> None:
        """All of an operation's starts ended: act on them, and record how it went."""
        name = record.name
        started = op.started()
        if op.failure is not None:
            for _, server in started:
                self._stop(server)
            reason = _reason(op.failure, name)
            if op.step == Step.BRING_UP:
                self._write(name, lambda s: s.bring_up_failed(reason))
            elif op.step == Step.ROLL_OUT:
                self._write(name, lambda s: s.update_failed(reason))
            else:
                self._write(name, lambda s: s.scale_failed(reason))
            log.warning("Endpoint %s: %s failed: %s", name, op.step, reason)
            return
        by_variant: dict[str, list[ModelServer]] = {}
        for variant, server in started:
            by_variant.setdefault(variant, []).append(server)
        if op.step == Step.RESCALE:
            for variant, servers in by_variant.items():
                with self._lock:  # a deletion either sees them in the router or is seen here
                    added = name not in self._deleting and self._router.add(name, variant, servers)
                if not added:
                    for server in servers:
                        self._stop(server)
            self._open_usage(record, started)
            self._write(name, lambda s: s.scaled())
            return
        live = [
            LiveVariant(
                v.name,
                v.weight,
                tuple(by_variant.get(v.name, ())),
                v.instance_type,
                components=v.for_components,
            )
            if v.serverless is None
            else LiveVariant(
                v.name,
                v.weight,
                (),
                v.instance_type,
                serverless=ServerlessState(
                    v.serverless, by_variant[v.name][0], record.arn, record.state.get("owner")
                ),
            )
            for v in op.variants
        ]
        serverless = {v.name for v in op.variants if v.serverless is not None}
        started = [(variant, server) for variant, server in started if variant not in serverless]
        with self._lock:
            deleted = name in self._deleting
            old = [] if deleted else self._router.set(name, live)
        if deleted:
            for _, server in started:
                self._stop(server)
            return
        self._open_usage(record, started)
        if op.step == Step.ROLL_OUT:
            config = op.config
            assert config is not None
            self._write(name, lambda s: s.updated(config))
            log.info("Endpoint %s: now serving endpoint config %s", name, config.name)
        else:
            self._write(name, lambda s: s.brought_up())
            log.info("Endpoint %s: InService", name)
        self._retire(name, [s for v in old for s in v.servers])

    def _rescale(self, name: str, state: EndpointState) -> None:
        """Start the instances each variant lacks, and retire those it has too many of."""
        live = {v.name: v for v in self._router.variants(name)}
        missing = []
        for variant in state.variants:
            if variant.serverless is not None:  # its requests scale it
                continue
            have = len(live[variant.name].servers) if variant.name in live else 0
            if variant.instance_count > have:
                missing.append(dataclasses.replace(variant, instance_count=variant.instance_count - have))
            elif variant.instance_count < have:
                self._retire(name, self._router.take(name, variant.name, have - variant.instance_count))
        if missing:
            self._begin(name, _Operation(Step.RESCALE, tuple(missing)))
        else:
            self._write(name, lambda s: s.scaled())

    # -- replacing, retiring, stopping ------------------------------------------------------------
    def _replace_dead(self) -> None:
        with self._lock:
            done = [r for r in self._replacing.values() if r.future.done()]
            for replacement in done:
                del self._replacing[id(replacement.dead)]
        for replacement in done:
            if replacement.future.exception() is not None:  # tried again at the next look
                log.error(
                    "Endpoint %s: replacing a model server failed: %s",
                    replacement.endpoint,
                    replacement.future.exception(),
                )
            else:
                with self._lock:
                    swapped = replacement.endpoint not in self._deleting and self._router.swap(
                        replacement.endpoint, replacement.dead, replacement.future.result()
                    )
                if not swapped:  # updated or deleted meanwhile
                    self._stop(replacement.future.result())
        for name in self._router.names():
            instances = [s for v in self._router.variants(name) if v.serverless is None for s in v.servers]
            for server in instances:  # a serverless variant's that ends is dropped (ServerlessPool)
                with self._lock:
                    if server.alive or id(server) in self._replacing or name in self._deleting:
                        continue
                    log.warning(
                        "Endpoint %s: the model server %s/%s ended (%s); replacing it",
                        name,
                        server.request.variant,
                        server.instance_dir.name,
                        server.ended,
                    )
                    future = self._workers.submit(self._replace_one, name, server)
                    self._replacing[id(server)] = _Replacement(name, server, future)
                future.add_done_callback(lambda _: self.wake())

    def _replace_one(self, name: str, dead: ModelServer) -> ModelServer:
        pool = self._servers(dead.request.instance_type)
        replacement = pool.replace(dead)
        try:
            pool.wait_healthy(
                replacement,
                self._timeout,
                gone=lambda: name in self._deleting or self._closing.is_set(),
            )
        except BaseException:
            pool.stop(replacement)
            raise
        return replacement

    def _retire(self, name: str, servers: list[ModelServer]) -> None:
        """Stop model servers taken out of the router once their requests are answered."""
        deadline = self._clock.now().timestamp() + self._drain
        with self._lock:
            self._retiring += [_Retiring(name, server, deadline) for server in servers]
        self._retire_drained()

    def _retire_drained(self) -> None:
        now = self._clock.now().timestamp()
        with self._lock:
            ready = [r for r in self._retiring if r.server.in_flight <= 0 or now >= r.deadline]
            self._retiring = [r for r in self._retiring if r not in ready]
        for retiring in ready:
            self._workers.submit(self._stop_and_close, retiring.endpoint, retiring.server, forget=True)

    def _stop_and_close(self, name: str, server: ModelServer, *, forget: bool = False) -> None:
        self._stop(server)
        self._costs.usage.close(_usage_key(name, server), self._clock.now())
        if forget:
            shutil.rmtree(server.instance_dir / "ml", ignore_errors=True)  # its log stays

    def _stop(self, server: ModelServer) -> None:
        if isinstance(server, CapacityInstance):
            server.release()
            return
        try:
            self._servers(server.request.instance_type).stop(server)
        except Exception:
            log.exception("Stopping the model server %s failed", server.instance_dir)

    def _stop_all(self, name: str) -> None:
        """Stop every model server of an endpoint, now: in service, retiring, or just started."""
        with self._lock:
            op = self._ops.pop(name, None)
            started = []
            if op is not None:
                op.deleted = True
                op.abandon.set()
                started = [s for _, s in op.started()]
            retiring = [r.server for r in self._retiring if r.endpoint == name]
            self._retiring = [r for r in self._retiring if r.endpoint != name]
            replaced = [
                r.future.result()
                for r in self._replacing.values()
                if r.endpoint == name and r.future.done() and r.future.exception() is None
            ]
        for variant in self._router.remove(name):
            for server in variant.servers:
                self._stop_and_close(name, server)
        for server in [*started, *retiring, *replaced]:
            self._stop_and_close(name, server)

    # -- deleting and closing -----------------------------------------------------------------------
    def delete(self, name: str) -> None:
        """Stop the endpoint's model servers, then forget it (its record and folder)."""
        with self._lock:
            self._deleting.add(name)
        try:
            self._write(name, lambda s: s.delete())
            self._stop_all(name)
            self._repository.delete(name)
            shutil.rmtree(self._dir / name, ignore_errors=True)
        finally:
            with self._lock:
                self._deleting.discard(name)

    def close(self) -> None:
        """End the loop and every model server (they are started again when the server starts)."""
        self._closing.set()
        self._wake.set()
        if self._thread is not None:
            self._thread.join(timeout=10)
        with self._lock:
            names = {*self._ops, *self._router.names(), *(r.endpoint for r in self._retiring)}
        for name in names:
            self._stop_all(name)

    # -- the record and the usage ledger ----------------------------------------------------------
    def _write(self, name: str, rule: Callable[[EndpointState], EndpointState]) -> None:
        """Apply ``rule`` to the endpoint's state: one write, when it changes anything."""

        def change(record: Resource) -> Resource:
            before = EndpointState.from_record(record.status, record.state)
            after = rule(before)
            if after == before:
                return record
            return dataclasses.replace(
                record,
                status=after.status.value,
                state={**record.state, **after.to_record()},
                last_modified=self._clock.now(),
            )

        with contextlib.suppress(NotFoundError):  # deleted meanwhile
            self._repository.modify(name, change)

    def _open_usage(self, record: Resource, servers: list[tuple[str, ModelServer]]) -> None:
        now = self._clock.now()
        for _, server in servers:
            self._costs.instances_started(
                _usage_key(record.name, server),
                kind="endpoint",
                name=record.name,
                arn=record.arn,
                instance_type=server.request.instance_type,
                count=1,
                work=JobKind.HOSTING,
                at=now,
                owner=record.state.get("owner"),
            )

    def _mark_seen(self) -> None:
        now = self._clock.now()
        if now.timestamp() - self._last_seen < _SEEN_SECONDS:
            return
        self._last_seen = now.timestamp()
        keys = [_usage_key(name, s) for name in self._router.names() for s in self._router.servers(name)]
        try:
            self._costs.usage.seen(keys, now)
        except Exception:
            log.exception("Recording endpoint usage failed")


def _usage_key(endpoint: str, server: ModelServer) -> str:
    return f"endpoint/{endpoint}/{server.instance_dir.parent.name}/{server.instance_dir.name}"


def _reason(exc: BaseException, name: str) -> str:
    if isinstance(exc, ShipyardError):
        return exc.message
    if not isinstance(exc, ModelServerError):
        log.error("Endpoint %s: %s", name, exc, exc_info=exc)
    return str(exc)


__all__ = ["DaemonExecutor", "EndpointReconciler"]
