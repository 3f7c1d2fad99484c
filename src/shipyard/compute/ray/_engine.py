"""What the Ray bridge process does on the cluster: job instances and model servers as actors.

Each job's instances get a placement group of one bundle per instance (SPREAD: on different nodes
where the cluster has them), and each instance a detached, named actor in its bundle
(:class:`~shipyard.compute.ray._host.InstanceHost`) that runs the instance agent on its node.
Ray does the placement (and, on an autoscaling cluster, asks for nodes); Shipyard keeps the
history: a thread here copies what each agent writes into the instance's folder on the server,
where the scheduler reads it as it does for local agents. Names are kept in the store, so a
restarted bridge finds its running instances again. Endpoint instances are
:class:`~shipyard.compute.ray._host.ModelHost` actors, not detached: they end with the bridge.

Only the bridge process (``_bridge.py``) runs this: Ray ends the process it is connected from when
its cluster goes away, and must not take the server with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import math
import os
import threading
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shipyard.compute._base import InstanceLaunch, write_agent_config
from shipyard.compute.ray._host import STREAMS, InstanceHost, ModelHost
from shipyard.core.placement import Resources
from shipyard.errors import ConfigurationError
from shipyard.runtime.contract import JobApi, StoreAccess

log = logging.getLogger(__name__)

NAMESPACE = "shipyard"
_POLL = 0.1  # how often each running instance is asked for news
_CLUSTER_EVERY = 2.0  # how often the cluster's resources are read again


@dataclasses.dataclass
class _Instance:
    """What the backend follows of one instance."""

    name: str  # the actor's name
    group: str | None  # its placement group's name (a job's instances have one)
    dir: Path  # its folder on the server
    actor: Any = None
    started: Any = None  # the start() call, until it answers
    reading: Any = None  # the read() call in flight
    node: dict[str, str] | None = None  # where it runs, once started
    ended: bool = False  # the agent exited and everything it wrote is here
    lost: str | None = None  # why it is gone without ending

    @property
    def alive(self) -> bool:
        return not self.ended and self.lost is None

    def state(self) -> dict[str, Any]:
        """What the server keeps of it."""
        return {
            "name": self.name,
            "alive": self.alive,
            "placed": self.node is not None or self.started is None,
            "lost": self.lost,
        }

    def offsets(self) -> dict[str, int]:
        sizes = {}
        for name in STREAMS:
            with contextlib.suppress(FileNotFoundError):
                sizes[name] = (self.dir / name).stat().st_size
        return sizes


def connect(address: str, token: str | None) -> None:
    """Connect this process to the Ray cluster at ``address`` (never start one). Ray reads its
    settings when it is first imported: call this before anything imports it."""
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    if token:
        os.environ["RAY_AUTH_MODE"] = "token"
        os.environ["RAY_AUTH_TOKEN"] = token
    import ray

    if ray.is_initialized():
        return
    failure: list[BaseException] = []

    def init() -> None:  # not on the main thread: ray.init would take over its SIGTERM handler
        try:
            ray.init(
                address=address,
                namespace=NAMESPACE,
                logging_level=logging.WARNING,
                log_to_driver=False,
                configure_logging=False,
            )
        except BaseException as exc:  # reported below, on the caller's thread
            failure.append(exc)

    thread = threading.Thread(target=init, name="shipyard-ray-init", daemon=True)
    thread.start()
    thread.join()
    if failure:
        texts = []
        error: BaseException | None = failure[0]
        while error is not None:  # Ray wraps the reason (a wrong token, say) in a ConnectionError
            texts.append(str(error))
            error = error.__cause__
        if any("InvalidAuthToken" in t for t in texts):
            reason = (
                "it refused this server's token (ray_token, or $RAY_AUTH_TOKEN)"
                if token or os.environ.get("RAY_AUTH_TOKEN")
                else "it requires a token: set ray_token (or $RAY_AUTH_TOKEN) to the cluster's token"
            )
        else:
            reason = _first_line(texts[0])
        raise ConfigurationError(
            f"Cannot connect to the Ray cluster at ray_address={address!r}: {reason}"
        ) from None


class RayEngine:
    """Job instances and model servers as actors on a Ray cluster (in the bridge process).

    Args:
        address, token, prefix, object_store, sandbox: as for the server's
            :class:`~shipyard.compute.ray.RayBackend`.
        on_instance: Called with an instance's :meth:`_Instance.state` whenever it changes.
        on_cluster: Called with the cluster's total and largest node when they change.
    """

    def __init__(
        self,
        address: str,
        *,
        token: str | None = None,
        prefix: str,
        object_store: Mapping[str, Any],
        sandbox: str = "auto",
        on_instance: Callable[[dict[str, Any]], None] = lambda state: None,
        on_cluster: Callable[[Resources, Resources], None] = lambda total, largest: None,
    ) -> None:
        connect(address, token)
        import ray

        self._ray = ray
        self._host = ray.remote(InstanceHost)
        self._model_host = ray.remote(ModelHost)
        self._on_instance = on_instance
        self._on_cluster = on_cluster
        self.address = address
        self.sandbox = sandbox
        self.prefix = prefix
        self.object_store = dict(object_store)
        self._instances: dict[str, _Instance] = {}
        self._groups: dict[str, set[str]] = {}  # placement group -> actors still holding it
        self._steering: dict[str, str] = {}  # model server starting -> the node it was sent to
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._demand: list[dict[str, float]] | None = None
        self._capacity, self._largest = self._read_cluster()
        self._thread = threading.Thread(target=self._run, name="shipyard-ray-backend", daemon=True)
        self._thread.start()

    # -- capacity ---------------------------------------------------------------------------------
    @property
    def cluster(self) -> tuple[Resources, Resources]:
        """The live nodes' total resources, and the largest node's."""
        return self._capacity, self._largest

    def _read_cluster(self) -> tuple[Resources, Resources]:
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        per_node = [_resources(n.get("Resources", {})) for n in nodes]
        total = Resources(
            sum(r.cpus for r in per_node), sum(r.memory_gib for r in per_node), sum(r.gpus for r in per_node)
        )
        largest = max(per_node, key=lambda r: (r.cpus, r.memory_gib, r.gpus), default=Resources(0, 0, 0))
        return total, largest

    def demand(self, waiting: Sequence[Resources]) -> None:
        """Ask the autoscaler for what waits (one bundle per instance)."""
        bundles = [_bundle(r) for r in waiting]
        if bundles == self._demand:
            return
        self._demand = bundles
        try:  # an autoscaling cluster adds nodes for them; a fixed one ignores it
            from ray.autoscaler.sdk import request_resources

            request_resources(bundles=bundles)
        except Exception as exc:  # asking is a favour; jobs wait regardless
            log.debug("Ray: could not ask the autoscaler for %d bundles: %s", len(bundles), exc)

    # -- launching --------------------------------------------------------------------------------
    def launch(self, launches: Sequence[InstanceLaunch]) -> list[dict[str, Any]]:
        """Place a job's instances and start their agents once placed; a handle per instance."""
        from ray.util.placement_group import placement_group
        from ray.util.scheduling_strategies import PlacementGroupSchedulingStrategy

        first = launches[0].instance_dir
        kind = launches[0].agent_config.kind
        key = f"{self.prefix}/{kind}/{first.parent.parent.name}/{first.parent.name}"  # server/kind/job/attempt-N
        families = self._families()
        bundles = [
            _bundle(launch.resources, families.get(_family(launch.instance_type))) for launch in launches
        ]
        group = placement_group(bundles, strategy="SPREAD", name=key, lifetime="detached")
        handles: list[dict[str, Any]] = []
        instances: list[_Instance] = []
        for index, (launch, bundle) in enumerate(zip(launches, bundles, strict=True)):
            name = f"{key}/{launch.instance_dir.name}"
            actor = self._host.options(
                name=name,
                namespace=NAMESPACE,
                lifetime="detached",
                max_restarts=0,
                num_cpus=bundle.get("CPU", 0),
                num_gpus=bundle.get("GPU", 0),
                memory=bundle.get("memory", 0),
                resources={k: v for k, v in bundle.items() if k not in ("CPU", "GPU", "memory")},
                scheduling_strategy=PlacementGroupSchedulingStrategy(
                    group, placement_group_bundle_index=index
                ),
            ).remote(name)
            instances.append(_Instance(name, key, launch.instance_dir, actor))
            handles.append({"actor": name, "group": key, "dir": str(launch.instance_dir)})
        master = instances[0].actor.rendezvous.remote()
        for instance, launch in zip(instances, launches, strict=True):
            # The server's copy; the node adds its own paths. No shared filesystem: the agent
            # reaches the object store over S3 (the server's own S3 API, signed with the job's
            # own credentials, or real S3).
            access = StoreAccess.from_json(self.object_store).signed_as(launch.agent_config.api)
            config = write_agent_config(launch, object_store=access)
            instance.started = instance.actor.start.remote(config.to_json(), master)
        with self._lock:
            self._groups[key] = {i.name for i in instances}
            for instance in instances:
                self._instances[instance.name] = instance
        for instance in instances:
            self._on_instance(instance.state())
        return handles

    def _families(self) -> dict[str, str]:
        """Instance families the cluster has a custom resource for (``ml.g5`` -> ``ml.g5``)."""
        names = self._ray.cluster_resources().keys()
        return {n: n for n in names if n.startswith("ml.")}

    # -- following --------------------------------------------------------------------------------
    def _track(self, handle: Mapping[str, Any]) -> _Instance:
        name = str(handle["actor"])
        with self._lock:
            instance = self._instances.get(name)
        if instance is not None:
            return instance
        # Launched by an earlier server process: find the actor again by its name.
        instance = _Instance(name, str(handle["group"]), Path(handle["dir"]))
        try:
            instance.actor = self._ray.get_actor(name, namespace=NAMESPACE)
        except ValueError:
            instance.lost = (
                f"its Ray actor {name!r} no longer exists (the Ray cluster at {self.address} restarted, "
                "or the actor was killed)"
            )
        with self._lock:
            instance = self._instances.setdefault(name, instance)
            if instance.group is not None:
                self._groups.setdefault(instance.group, set()).add(name)
        return instance

    def track(self, handle: Mapping[str, Any]) -> dict[str, Any]:
        """The state of an instance (found again by name when this process did not launch it)."""
        return self._track(handle).state()

    def signal(self, handle: Mapping[str, Any], signum: int) -> None:
        instance = self._track(handle)
        if instance.alive and instance.actor is not None:
            instance.actor.signal.remote(signum)

    def kill(self, handle: Mapping[str, Any], instance_dir: Path) -> None:
        instance = self._track(handle)
        if instance.actor is not None:
            with contextlib.suppress(Exception):  # a dead actor has nothing left to kill
                self._ray.wait([instance.actor.kill.remote()], timeout=5)
        if instance.alive:
            instance.lost = instance.lost or "killed"
        self._release(instance)
        self._on_instance(instance.state())

    # -- model servers ----------------------------------------------------------------------------
    def start_model(
        self,
        request: Any,
        bundle: Mapping[str, float],
        hosting: Mapping[str, Any],
        timeout: float,
    ) -> dict[str, Any]:
        """Start a model server for ``request`` (a ModelRequest) in an actor with ``bundle``'s
        resources and wait until it listens; its name and address."""
        variant = f"{self.prefix}/{request.endpoint}/{request.variant}/"
        name = f"{variant}{request.instance_dir.name}-{uuid.uuid4().hex[:6]}"
        nodes = [n for n in self._ray.nodes() if n.get("Alive")]
        with self._lock:  # a variant's servers start at once: each counts the others' choices
            used = [
                str(i.node["node_id"])
                for n, i in self._instances.items()
                if n.startswith(variant) and i.alive and i.node and i.node.get("node_id")
            ] + [node for n, node in self._steering.items() if n.startswith(variant)]
            node = spread_node(nodes, bundle, used)
            if node is not None:
                self._steering[name] = node
        strategy: Any = "SPREAD"
        if node is not None:  # Ray's own SPREAD is best effort across separate actors
            from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

            # Preferred, not required: elsewhere when that node has no room now.
            strategy = NodeAffinitySchedulingStrategy(node, soft=True, _spill_on_unavailable=True)
        actor: Any = self._model_host.options(
            name=name,
            namespace=NAMESPACE,
            max_restarts=0,
            num_cpus=bundle["CPU"],
            num_gpus=bundle.get("GPU", 0),
            memory=bundle["memory"],
            scheduling_strategy=strategy,
        ).remote(name)
        access = StoreAccess.from_json(self.object_store)
        credentials = hosting.get("credentials")  # the instance's own, to fetch its model
        if credentials:
            access = access.signed_as(JobApi(access.endpoint_url or "", **credentials))
        ref = actor.start.remote(
            request,
            access.to_json(),
            hosting["sources"],
            hosting["allow_server_python"],
            self.sandbox,
        )
        try:
            answer: dict[str, Any] = self._ray.get(ref, timeout=timeout)
        except self._ray.exceptions.GetTimeoutError:
            self._ray.kill(actor)
            raise RuntimeError(
                f"no Ray node had room for a {request.instance_type} model server "
                f"({bundle['CPU']:g} CPUs, {bundle['memory'] / 2**30:.1f} GiB) in {timeout:g} s"
            ) from None
        except Exception as exc:
            self._ray.kill(actor)
            raise RuntimeError(f"the model server could not start on Ray: {_first_line(str(exc))}") from None
        finally:
            with self._lock:
                self._steering.pop(name, None)
        instance = _Instance(name, None, request.instance_dir, actor, node=answer)
        with self._lock:
            self._instances[name] = instance
        self._on_instance(instance.state())
        return {"name": name, "host": answer["ip"], "port": int(answer["port"]), "token": answer["token"]}

    def stop_model(self, name: str) -> None:
        with self._lock:
            instance = self._instances.get(name)
        if instance is None:
            return
        if instance.alive:
            instance.lost = "stopped"
        self._release(instance)
        self._on_instance(instance.state())

    def on_change(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def close(self) -> None:
        """Stop following; job instances run on (a new bridge finds them by name)."""
        self._closed.set()
        self._thread.join(timeout=5)

    def _run(self) -> None:
        last_cluster = time.monotonic()
        while not self._closed.is_set():
            try:
                changed = self._pass()
                if time.monotonic() - last_cluster > _CLUSTER_EVERY:
                    cluster = self._read_cluster()
                    if cluster != (self._capacity, self._largest):
                        self._capacity, self._largest = cluster
                        self._on_cluster(*cluster)
                    last_cluster = time.monotonic()
            except Exception:  # the thread must outlive anything one pass runs into
                log.exception("Ray backend: pass failed")
                changed = False
                self._closed.wait(1)
            if changed:
                for callback in self._callbacks:
                    callback()

    def _pass(self) -> bool:
        """Ask every running instance for news, wait up to one poll for answers, and store them;
        returns whether anything changed."""
        with self._lock:
            running = [i for i in self._instances.values() if i.alive and i.actor is not None]
        waiting: dict[Any, tuple[_Instance, str]] = {}
        for instance in running:
            actor = instance.actor  # None once the scheduler's thread has killed it
            if actor is None:
                continue
            if instance.started is not None:
                waiting[instance.started] = (instance, "start")
            if instance.reading is None:
                instance.reading = actor.read.remote(instance.offsets())
            waiting[instance.reading] = (instance, "read")
        if not waiting:
            self._closed.wait(_POLL)
            return False
        started = time.monotonic()
        ready, _ = self._ray.wait(list(waiting), num_returns=len(waiting), timeout=_POLL)
        changed = False
        for ref in ready:
            instance, call = waiting[ref]
            try:
                answer = self._ray.get(ref)
            except self._ray.exceptions.ActorUnavailableError:
                # A call that failed in flight (the actor's connection broke): ask again; if the
                # actor is dead, Ray says so (ActorDiedError) once it knows.
                if call == "read":
                    instance.reading = None
                continue
            except Exception as exc:  # every other failure of the actor ends the instance
                instance.lost = self._why(instance, call, exc)
                log.warning("Ray: %s lost: %s", instance.name, instance.lost)
                self._release(instance)
                self._on_instance(instance.state())
                changed = True
                continue
            if call == "start":
                instance.started, instance.node = None, answer
                self._on_instance(instance.state())
            else:
                instance.reading = None
                changed = self._store(instance, answer) or changed
        self._closed.wait(max(0.0, _POLL - (time.monotonic() - started)))
        return changed

    def _store(self, instance: _Instance, answer: Mapping[str, Any]) -> bool:
        """Write what an instance sent into its folder on the server; whether anything was new."""
        instance.dir.mkdir(parents=True, exist_ok=True)
        changed = False
        status = answer.get("status")
        path = instance.dir / "status.json"
        if status is not None and (not path.exists() or path.read_bytes() != status):
            tmp = path.with_suffix(".tmp")
            tmp.write_bytes(status)
            os.replace(tmp, path)
            changed = True
        for name, data in answer["streams"].items():
            with (instance.dir / name).open("ab") as f:
                f.write(data)
            changed = True
        if answer["ended"]:
            instance.ended = True
            self._release(instance)
            self._on_instance(instance.state())
            changed = True
        return changed

    def _release(self, instance: _Instance) -> None:
        """The instance is over: remove its actor (and folder on the node), and its placement
        group once no instance holds it."""
        actor, instance.actor = instance.actor, None
        if actor is not None:
            try:
                self._ray.wait([actor.cleanup.remote()], timeout=10)
            except Exception:  # the actor or its node is gone: nothing to clean
                log.debug("Ray: %s could not clean up", instance.name)
            with contextlib.suppress(Exception):
                self._ray.kill(actor)
        if instance.group is None:
            return
        with self._lock:
            holders = self._groups.get(instance.group, set())
            holders.discard(instance.name)
            if holders:
                return
            self._groups.pop(instance.group, None)
        from ray.util.placement_group import get_placement_group, remove_placement_group

        with contextlib.suppress(Exception):
            remove_placement_group(get_placement_group(instance.group))

    def _why(self, instance: _Instance, call: str, exc: BaseException) -> str:
        """A user's reason for an instance's end from the Ray error (the node, when it died)."""
        node_id = (instance.node or {}).get("node_id")
        text = str(exc)
        if node_id is None and "Node Id: " in text:
            node_id = text.split("Node Id: ", 1)[1].split()[0].strip(".,")
        node = next((n for n in self._ray.nodes() if n.get("NodeID") == node_id), None) if node_id else None
        if node is not None and not node.get("Alive"):
            name = node.get("NodeName") or node_id
            address = node.get("NodeManagerAddress", "?")
            detail = node.get("DeathReasonMessage") or ""
            return f"Ray node {name} ({address}) died" + (f": {detail}" if detail else "")
        if call == "start":
            return f"it could not start on Ray: {_first_line(text)}"
        return f"its Ray actor died: {_first_line(text)}"


def spread_node(
    nodes: Sequence[Mapping[str, Any]], bundle: Mapping[str, float], used: Sequence[str]
) -> str | None:
    """The node for a variant's next model server: of the live nodes large enough for ``bundle``,
    the one running the fewest of the variant's servers (``used``: their node ids), so that an
    endpoint's instances land on different nodes while the cluster has them. Ties go to the node
    with the most CPUs, then by id, so the choice is the same for the same cluster."""

    def fits(node: Mapping[str, Any]) -> bool:
        have = node.get("Resources", {})
        return all(have.get(key, 0) >= amount for key, amount in bundle.items() if amount)

    candidates = [n for n in nodes if fits(n)]
    if not candidates:
        return None
    best = min(
        candidates,
        key=lambda n: (used.count(n["NodeID"]), -n.get("Resources", {}).get("CPU", 0), n["NodeID"]),
    )
    return str(best["NodeID"])


def _first_line(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:500] if lines else "no reason given"


def _resources(raw: Mapping[str, float]) -> Resources:
    memory_gib = math.floor(raw.get("memory", 0) / 2**30 * 100) / 100  # down: a bundle must fit
    return Resources(float(raw.get("CPU", 0)), memory_gib, int(raw.get("GPU", 0)))


def _family(instance_type: str) -> str:
    """``ml.g5.xlarge`` -> ``ml.g5``."""
    return instance_type.rsplit(".", 1)[0]


def _bundle(resources: Resources, family: str | None = None) -> dict[str, float]:
    bundle: dict[str, float] = {"CPU": resources.cpus, "memory": int(resources.memory_gib * 2**30)}
    if resources.gpus:
        bundle["GPU"] = resources.gpus
    if family:
        bundle[family] = 1
    return bundle
