"""Inference components: models placed on the instances of an endpoint for them, each with its own
copies, and InvokeEndpoint's choice of a copy.

A component's record says what is wanted (its Specification, copy count, status); the API calls
change it with the rules of :class:`~shipyard.core.inference_components.ComponentState`. Each pass
of the endpoint reconciler's loop (:meth:`InferenceComponentService.tick`, one of its ``passes``)
brings the live copies to the records: copies missing are placed on the variant's instances
(:func:`~shipyard.core.inference_components.place`, within each instance type's vCPUs, memory and
accelerators, counting every component's copies there) and started on workers, each a model
server as an endpoint instance's is (the same ``ModelServers``, folder, environment and sandbox;
its memory held to MaxMemoryRequiredInMb where given); copies too many, or of a Specification an
update replaced, are taken out of routing and stopped once their requests are answered; a copy
that ends is dropped and started again. The instances themselves are the endpoint's
(:class:`~shipyard.services._router.CapacityInstance`), billed as any endpoint instance;
components add nothing to the ledger, as on SageMaker.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import itertools
import logging
import random
import shutil
import threading
import uuid
from collections.abc import Callable, Mapping
from concurrent.futures import Executor, Future
from pathlib import Path
from typing import Any

from shipyard.compute import ModelRequest, ModelServer, ModelServerError, ModelServers
from shipyard.core.arn import sagemaker_arn
from shipyard.core.catalog import InstanceCatalog
from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.hosting import ContainerSpec, EndpointStatus, ModelSpec
from shipyard.core.inference_components import (
    KIND,
    Capacity,
    ComponentSpec,
    ComponentState,
    ComponentStatus,
    InsufficientCapacity,
    Need,
    choose_copy,
    copy_count,
    place,
)
from shipyard.core.pagination import Page
from shipyard.envs import ImageResolver
from shipyard.errors import NotFoundError, ShipyardError, ValidationError
from shipyard.services._claims import NO_CLAIMS, Claims
from shipyard.services._router import CapacityInstance, LiveVariant, NoRoute, Router
from shipyard.store import Resource, ResourceRepository

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class _Copy:
    server: ModelServer
    instance: str  # the id of the endpoint instance it runs on
    instance_type: str
    version: int  # of the Specification it serves
    need: Need


@dataclasses.dataclass
class _Live:
    """A component's copies in service (a tuple, replaced whole, so readers may iterate it)."""

    endpoint: str
    variant: str
    routing: str
    copies: tuple[_Copy, ...] = ()
    turns: itertools.count[int] = dataclasses.field(default_factory=itertools.count)


@dataclasses.dataclass
class _Starting:
    version: int
    placed: list[tuple[str, Need]]  # reserved on each instance until the starts end
    starts: list[Future[_Copy]] = dataclasses.field(default_factory=list)
    abandon: threading.Event = dataclasses.field(default_factory=threading.Event)

    def done(self) -> bool:
        return all(f.done() for f in self.starts)


class InferenceComponentService:
    """Inference components and their copies (see the module docstring).

    Args:
        endpoints: The endpoints' records (a component's endpoint must exist and serve).
        router: The endpoints' live variants: a variant for components holds its instances.
        servers: The model servers for an instance type (``Backends.model_servers_for``).
        model: A model's spec by name.
        routing: The RoutingStrategy of an endpoint's variant (endpoint, variant → strategy).
        wake: Wakes the loop whose passes call :meth:`tick`.
    """

    def __init__(
        self,
        repository: ResourceRepository,
        endpoints: ResourceRepository,
        router: Router,
        servers: Callable[[str], ModelServers],
        model: Callable[[str], tuple[Resource, ModelSpec]],
        resolver: ImageResolver,
        catalog: InstanceCatalog,
        *,
        account_id: str,
        routing: Callable[[str, str], str] = lambda endpoint, variant: "LEAST_OUTSTANDING_REQUESTS",
        clock: Clock = SYSTEM_CLOCK,
        workers: Executor,
        startup_timeout: float = 600.0,
        drain_seconds: float = 30.0,
        claims: Claims = NO_CLAIMS,
        wake: Callable[[], None] = lambda: None,
        endpoints_dir: Path,
    ) -> None:
        self.repository = repository
        self._endpoints = endpoints
        self._router = router
        self._servers = servers
        self._model = model
        self._resolver = resolver
        self._catalog = catalog
        self._account_id = account_id
        self._routing = routing
        self._clock = clock
        self._workers = workers
        self._timeout = startup_timeout
        self._drain = drain_seconds
        self._claims = claims
        self._wake = wake
        self._endpoints_dir = endpoints_dir
        self._lock = threading.Lock()
        self._live: dict[str, _Live] = {}
        self._ops: dict[str, _Starting] = {}
        self._retiring: list[tuple[_Copy, float]] = []
        self._closing = threading.Event()
        self._random = random.Random()
        self._calls: dict[str, collections.deque[float]] = {}  # when each was invoked (autoscaling's measure)

    # -- API operations ------------------------------------------------------------------------------
    def create(self, params: Mapping[str, Any], *, region: str, owner: str | None = None) -> Resource:
        name = params["InferenceComponentName"]
        if params.get("Specifications"):
            raise ValidationError(
                "Specifications (several specifications in one component) is not supported by Shipyard "
                "yet: give one Specification",
                field="Specifications",
            )
        spec = ComponentSpec.from_request(params.get("Specification"))
        copies = copy_count(params.get("RuntimeConfig"))
        endpoint = self._endpoint_for(params["EndpointName"])
        variant = self._variant_of(endpoint, params.get("VariantName"))
        self._check_serves(spec, "Specification")
        now = self._clock.now()
        state = ComponentState.new(params["Specification"], copies)
        component = Resource(
            KIND,
            name,
            sagemaker_arn(region, self._account_id, KIND, name),
            now,
            dict(params),
            state={
                **state.to_record(),
                "endpoint": endpoint.name,
                "endpoint_arn": endpoint.arn,
                "variant": variant,
                "owner": owner,
            },
            status=state.status.value,
            last_modified=now,
        )
        self.repository.create(component)
        self._claims.claim_for(component.arn, owner)
        self._wake()
        return component

    def get(self, name: str) -> Resource:
        return self.repository.get(name)

    def find(self, params: Mapping[str, Any]) -> tuple[list[Resource], str | None]:
        """ListInferenceComponents: its filters, sort and pages."""
        found = self.repository.find(
            name_contains=params.get("NameContains"),
            status=params.get("StatusEquals"),
            created_after=params.get("CreationTimeAfter"),
            created_before=params.get("CreationTimeBefore"),
            sort_by=params.get("SortBy", "CreationTime"),
            ascending=params.get("SortOrder", "Descending") == "Ascending",
            limit=1_000_000,
        )
        after, before = params.get("LastModifiedTimeAfter"), params.get("LastModifiedTimeBefore")
        kept = [
            c
            for c in found
            if params.get("EndpointNameEquals") in (None, c.state.get("endpoint"))
            and params.get("VariantNameEquals") in (None, c.state.get("variant"))
            and (after is None or (c.last_modified or c.created) > after)
            and (before is None or (c.last_modified or c.created) < before)
        ]
        return Page.requested(params, default_size=10).slice(kept)

    def update(self, params: Mapping[str, Any]) -> Resource:
        """UpdateInferenceComponent: a new Specification (copies of it start beside the current
        ones, which stop once the new ones serve) and/or RuntimeConfig."""
        name = params["InferenceComponentName"]
        if params.get("Specifications"):
            raise ValidationError(
                "Specifications is not supported by Shipyard yet: give one Specification",
                field="Specifications",
            )
        specification = params.get("Specification")
        if specification is not None:
            specification = _merged(self.repository.get(name).state["specification"], specification)
            self._check_serves(ComponentSpec.from_request(specification), "Specification")
        copies = copy_count(params["RuntimeConfig"]) if params.get("RuntimeConfig") else None
        if specification is None and copies is None:
            raise ValidationError("Give a Specification or a RuntimeConfig to change", field="Specification")
        return self._change(name, lambda s: s.update(name, specification, copies))

    def update_runtime_config(self, params: Mapping[str, Any]) -> Resource:
        """UpdateInferenceComponentRuntimeConfig: the copy count."""
        name = params["InferenceComponentName"]
        copies = copy_count(params["DesiredRuntimeConfig"], "DesiredRuntimeConfig")
        return self._change(name, lambda s: s.update(name, None, copies))

    def delete(self, name: str) -> None:
        """Stop the component's copies and forget it (when this returns, none runs)."""
        record = self.repository.get(name)
        self._write(name, lambda s: s.delete())
        with self._lock:
            live = self._live.pop(name, None)
            op = self._ops.pop(name, None)
            if op is not None:
                op.abandon.set()
        if op is not None:
            for future in op.starts:
                future.add_done_callback(self._stop_started)
        for copy in live.copies if live else ():
            self._stop(copy)
        self.repository.delete(name)
        self._calls.pop(name, None)
        self._claims.forget(record.arn)
        # Its logs go with it: a later component of the same name, maybe another user's, starts afresh.
        for folder in self._endpoints_dir.glob(f"{record.state['endpoint']}/*/i-*/components/{name}"):
            shutil.rmtree(folder, ignore_errors=True)

    def on_endpoint(self, endpoint: str) -> list[str]:
        """The components placed on ``endpoint`` (which must be deleted before it is)."""
        return sorted(
            c.name for c in self.repository.find(limit=1_000_000) if c.state.get("endpoint") == endpoint
        )

    def busy_endpoints(self) -> set[str]:
        """The endpoints with a component being created or updated: DescribeEndpoint shows them
        Updating meanwhile (what the sagemaker SDK v3 waits on after CreateInferenceComponent)."""
        busy = (ComponentStatus.CREATING.value, ComponentStatus.UPDATING.value)
        return {
            str(c.state.get("endpoint")) for c in self.repository.find(limit=1_000_000) if c.status in busy
        }

    def current(self, name: str) -> list[tuple[str, str]]:
        """The copies in service now: (instance type, instance id) of each."""
        with self._lock:
            live = self._live.get(name)
        if live is None:
            return []
        return [(c.instance_type, c.instance) for c in live.copies if c.server.alive]

    # -- InvokeEndpoint ----------------------------------------------------------------------------
    def pick(self, endpoint: str, name: str) -> tuple[LiveVariant, ModelServer]:
        """The variant and the copy a request to component ``name`` on ``endpoint`` goes to.

        Raises:
            NotFoundError: the endpoint is not in service.
            ValidationError: no such component, it is on another endpoint, or not in service.
            NoRoute: it has no copy answering (CopyCount 0, or copies being replaced).
        """
        with self._lock:
            live = self._live.get(name)
        if live is None or live.endpoint != endpoint:
            self._refuse(endpoint, name)
        assert live is not None
        calls = self._calls.setdefault(name, collections.deque(maxlen=100_000))
        calls.append(self._clock.now().timestamp())
        copies = [c for c in live.copies if c.server.alive]
        if not copies:
            raise NoRoute(f"Inference component {name!r} of endpoint {endpoint!r} has no copy answering")
        turn = next(live.turns) if live.routing != "RANDOM" else self._random.randrange(len(copies))
        chosen = copies[choose_copy([c.server.in_flight for c in copies], turn, live.routing)]
        variant = next((v for v in self._router.variants(endpoint) if v.name == live.variant), None)
        if variant is None:
            raise NotFoundError(f"Endpoint {endpoint} not found.")
        return variant, chosen.server

    def invocations(self, name: str, window: float) -> int:
        """The requests sent to the component in the last ``window`` seconds (copies or not)."""
        since = self._clock.now().timestamp() - window
        calls = self._calls.get(name)
        if calls is None:
            return 0
        while calls and calls[0] < since:
            calls.popleft()
        return len(calls)

    def _refuse(self, endpoint: str, name: str) -> None:
        try:
            record = self.repository.get(name)
        except NotFoundError:
            raise ValidationError(
                f"Inference component {name} of account {self._account_id} not found.",
                field="InferenceComponentName",
                value=name,
            ) from None
        if record.state.get("endpoint") != endpoint:
            raise ValidationError(
                f"Inference component {name} is not on endpoint {endpoint} "
                f"(it is on {record.state.get('endpoint')}).",
                field="InferenceComponentName",
                value=name,
            )
        raise ValidationError(
            f"Inference component {name} of endpoint {endpoint} is {record.status}, not InService.",
            field="InferenceComponentName",
            value=name,
        )

    # -- the pass ----------------------------------------------------------------------------------
    def tick(self) -> bool:
        """Bring every component's copies to its record; returns whether work is under way."""
        records = self.repository.find(limit=1_000_000)
        for record in sorted(records, key=lambda r: r.created):
            try:
                self._reconcile(record)
            except Exception:
                log.exception("Inference component %s: reconciling failed", record.name)
        known = {r.name for r in records}
        with self._lock:
            orphans = [n for n in self._live if n not in known and n not in self._ops]
            gone = [self._live.pop(n) for n in orphans]
        for live in gone:  # deleted behind our back
            for copy in live.copies:
                self._stop(copy)
        self._retire_drained()
        with self._lock:
            return bool(self._ops or self._retiring)

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
        state = ComponentState.from_record(record.status, record.state)
        if state.status in (ComponentStatus.FAILED, ComponentStatus.DELETING):
            self._take_all(name)
            return
        endpoint_name, variant = record.state["endpoint"], record.state["variant"]
        try:
            endpoint = self._endpoints.get(endpoint_name)
        except NotFoundError:
            endpoint = None
        if endpoint is None or endpoint.status == EndpointStatus.FAILED.value:
            reason = f"The endpoint {endpoint_name} " + ("is Failed" if endpoint else "was deleted")
            self._write(name, lambda s: s.endpoint_lost(reason))
            self._take_all(name)
            return
        instances = self._instances(endpoint_name, variant)
        if not instances:  # the endpoint is not in service (yet, or again after a restart)
            return
        present = {i.instance_dir.name for i in instances}
        with self._lock:
            live = self._live.setdefault(
                name, _Live(endpoint_name, variant, self._routing(endpoint_name, variant))
            )
            # A copy whose instance the endpoint gave up (scaled in, updated) goes with it.
            dead = [c for c in live.copies if not c.server.alive or c.instance not in present]
            live.copies = tuple(c for c in live.copies if c not in dead)
            current = [c for c in live.copies if c.version == state.version]
            old = [c for c in live.copies if c.version != state.version]
        for copy in dead:
            log.warning(
                "Inference component %s: the copy %s %s; starting another",
                name,
                copy.server.instance_dir.name,
                f"ended ({copy.server.ended})"
                if not copy.server.alive
                else f"lost its instance {copy.instance}",
            )
            self._stop(copy)
        missing = state.copies - len(current)
        if missing > 0:
            self._begin(name, record, state, instances, missing)
            return
        if missing < 0:
            self._retire(name, current[missing:])
        if old:
            self._retire(name, old)
        if state.status in (ComponentStatus.CREATING, ComponentStatus.UPDATING):
            self._write(name, lambda s: s.served())
            log.info("Inference component %s: InService with %d copies", name, state.copies)

    def _begin(
        self,
        name: str,
        record: Resource,
        state: ComponentState,
        instances: list[CapacityInstance],
        missing: int,
    ) -> None:
        spec = state.spec
        capacity = [self._capacity(i) for i in instances]
        with self._lock:
            live = self._live[name]
            used: dict[str, Need] = {}
            for other in self._live.values():
                for copy in other.copies:
                    used[copy.instance] = used.get(copy.instance, Need()) + copy.need
            for starting in self._ops.values():
                for instance, need in starting.placed:
                    used[instance] = used.get(instance, Need()) + need
            already: dict[str, int] = {}
            for copy in live.copies:
                if copy.version == state.version:
                    already[copy.instance] = already.get(copy.instance, 0) + 1
            running = sum(already.values())
            try:
                chosen = place(
                    capacity,
                    used,
                    spec.need,
                    missing,
                    strategy=spec.placement,
                    component=name,
                    already=already,
                )
            except InsufficientCapacity as exc:
                reason = exc.message
                chosen = []
            else:
                op = _Starting(state.version, [(i, spec.need) for i in chosen])
                self._ops[name] = op
        if not chosen:
            log.warning("Inference component %s: %s", name, reason)
            self._write(name, lambda s: s.start_failed(reason, running=running))
            return
        by_id = {i.instance_dir.name: i for i in instances}
        for instance in chosen:
            future = self._workers.submit(
                self._start_copy, name, record.state["endpoint"], by_id[instance], spec, state.version, op
            )
            op.starts.append(future)
            future.add_done_callback(lambda _: self._wake())
        log.info("Inference component %s: starting %d copies", name, len(chosen))

    def _start_copy(
        self,
        name: str,
        endpoint: str,
        instance: CapacityInstance,
        spec: ComponentSpec,
        version: int,
        op: _Starting,
    ) -> _Copy:
        """A worker's job: one copy, a healthy model server (stopped again if it is not)."""
        container: ContainerSpec = spec.container or self._model(spec.model or "")[1].container
        folder = instance.instance_dir / "components" / name / f"copy-{uuid.uuid4().hex[:12]}"
        folder.mkdir(parents=True)
        field = "Specification.Container.Image" if spec.container else "Specification.ModelName"
        request = ModelRequest(
            instance_dir=folder,
            endpoint=endpoint,
            variant=instance.request.variant,
            instance_type=instance.request.instance_type,
            container=container,
            environment=self._resolver.resolve(container.image, field=field),
            memory_limit_mb=spec.need.max_memory_mb,
        )
        if op.abandon.is_set():
            raise ModelServerError("the inference component is being deleted")
        pool = self._servers(request.instance_type)
        server = pool.start(request)
        timeout = float(spec.startup_timeout or self._timeout)
        try:
            pool.wait_healthy(server, timeout, gone=lambda: op.abandon.is_set() or self._closing.is_set())
        except BaseException:
            pool.stop(server)
            raise
        return _Copy(server, instance.instance_dir.name, request.instance_type, version, spec.need)

    def _finish(self, record: Resource, op: _Starting) -> None:
        name = record.name
        copies = [f.result() for f in op.starts if not f.cancelled() and f.exception() is None]
        failures = [f.exception() for f in op.starts if not f.cancelled() and f.exception() is not None]
        if failures:
            for copy in copies:
                self._stop(copy)
            error = failures[0]
            reason = error.message if isinstance(error, ShipyardError) else str(error)
            with self._lock:
                live = self._live.get(name)
                running = sum(1 for c in live.copies if c.version == op.version) if live else 0
            log.warning("Inference component %s: starting copies failed: %s", name, reason)
            self._write(name, lambda s: s.start_failed(reason, running=running))
            return
        with self._lock:
            live = self._live.get(name)
            if live is not None:
                live.copies = (*live.copies, *copies)
        if live is None:  # deleted meanwhile
            for copy in copies:
                self._stop(copy)
        self._wake()

    # -- copies out of service ---------------------------------------------------------------------
    def _retire(self, name: str, copies: list[_Copy]) -> None:
        gone = {id(c) for c in copies}
        deadline = self._clock.now().timestamp() + self._drain
        with self._lock:
            live = self._live.get(name)
            if live is not None:
                live.copies = tuple(c for c in live.copies if id(c) not in gone)
            self._retiring += [(c, deadline) for c in copies]
        self._retire_drained()

    def _retire_drained(self) -> None:
        now = self._clock.now().timestamp()
        with self._lock:
            ready = [(c, d) for c, d in self._retiring if c.server.in_flight <= 0 or now >= d]
            self._retiring = [r for r in self._retiring if r not in ready]
        for copy, _ in ready:
            self._workers.submit(self._stop, copy)

    def _take_all(self, name: str) -> None:
        with self._lock:
            live = self._live.pop(name, None)
        for copy in live.copies if live else ():
            self._stop(copy)

    def _stop_started(self, future: Future[_Copy]) -> None:
        if not future.cancelled() and future.exception() is None:
            self._stop(future.result())

    def _stop(self, copy: _Copy) -> None:
        try:
            self._servers(copy.instance_type).stop(copy.server)
        except Exception:
            log.exception("Stopping the copy %s failed", copy.server.instance_dir)
        shutil.rmtree(copy.server.instance_dir / "ml", ignore_errors=True)  # its log stays

    def close(self) -> None:
        """Stop every copy (they are started again when the server starts)."""
        self._closing.set()
        with self._lock:
            lives = list(self._live.values())
            self._live.clear()
            ops = list(self._ops.values())
            retiring = [c for c, _ in self._retiring]
            self._retiring = []
        for op in ops:
            op.abandon.set()
            for future in op.starts:
                future.add_done_callback(self._stop_started)
        for copy in [*(c for live in lives for c in live.copies), *retiring]:
            self._stop(copy)

    # -- helpers -----------------------------------------------------------------------------------
    def _instances(self, endpoint: str, variant: str) -> list[CapacityInstance]:
        return [
            s
            for v in self._router.variants(endpoint)
            if v.name == variant and v.components
            for s in v.servers
            if isinstance(s, CapacityInstance) and s.alive
        ]

    def _capacity(self, instance: CapacityInstance) -> Capacity:
        kind = self._catalog.get(instance.request.instance_type)
        return Capacity(
            instance.instance_dir.name, float(kind.vcpu), int(kind.memory_gib * 1024), float(kind.gpu_count)
        )

    def _endpoint_for(self, name: str) -> Resource:
        try:
            endpoint = self._endpoints.get(name)
        except NotFoundError:
            raise ValidationError(
                f'Could not find endpoint "{name}".', field="EndpointName", value=name
            ) from None
        if not endpoint.state.get("variants") or any(v.get("model") for v in endpoint.state["variants"]):
            raise ValidationError(
                f"Endpoint {name!r} serves models of its own (its production variants name a ModelName): "
                "inference components go on an endpoint whose config's variants name no model",
                field="EndpointName",
                value=name,
            )
        return endpoint

    def _variant_of(self, endpoint: Resource, variant: str | None) -> str:
        names = [v["name"] for v in endpoint.state["variants"]]
        if variant is None:
            if len(names) == 1:
                return str(names[0])
            raise ValidationError(
                f"VariantName is required: endpoint {endpoint.name!r} has the variants {', '.join(names)}",
                field="VariantName",
            )
        if variant not in names:
            raise ValidationError(
                f"The variant {variant!r} is not a production variant of endpoint {endpoint.name!r} "
                f"({', '.join(names)})",
                field="VariantName",
                value=variant,
            )
        return variant

    def _check_serves(self, spec: ComponentSpec, field: str) -> None:
        """The model exists, or the container's image resolves to an environment."""
        if spec.model is not None:
            try:
                self._model(spec.model)
            except NotFoundError:
                raise ValidationError(
                    f"Could not find model {spec.model!r}.", field=f"{field}.ModelName", value=spec.model
                ) from None
        if spec.container is not None:
            self._resolver.resolve(spec.container.image, field=f"{field}.Container.Image")

    def _change(self, name: str, rule: Callable[[ComponentState], ComponentState]) -> Resource:
        def change(record: Resource) -> Resource:
            state = rule(ComponentState.from_record(record.status, record.state))
            return dataclasses.replace(
                record,
                status=state.status.value,
                state={**record.state, **state.to_record()},
                last_modified=self._clock.now(),
            )

        record = self.repository.modify(name, change)
        self._wake()
        return record

    def _write(self, name: str, rule: Callable[[ComponentState], ComponentState]) -> None:
        """Apply ``rule``: one write, when it changes anything."""

        def change(record: Resource) -> Resource:
            before = ComponentState.from_record(record.status, record.state)
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
            self.repository.modify(name, change)


def _merged(current: Mapping[str, Any], given: Mapping[str, Any]) -> dict[str, Any]:
    """An update's Specification over the current one: what it leaves out is kept (the sagemaker
    SDK's ``update_predictor`` sends only what changes); a ModelName replaces a Container and
    the other way round."""
    merged = {**current, **given}
    if given.get("ModelName"):
        merged.pop("Container", None)
    elif given.get("Container"):
        merged.pop("ModelName", None)
    return merged


__all__ = ["InferenceComponentService"]
