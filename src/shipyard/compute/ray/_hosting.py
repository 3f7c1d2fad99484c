"""Endpoints on the Ray backend: each endpoint instance a Ray actor running its model server.

Each instance of a production variant is a :class:`~shipyard.compute.ray._host.ModelHost` actor
with the instance type's resources (SPREAD over the nodes), which prepares the model on its node
and serves it on the node's address. InvokeEndpoint goes from the Shipyard server straight to it:
routing by weight, autoscaling (the variant's instance count) and replacement of instances that
die stay Shipyard's, as on the local backend. The actors are not detached: like local model
servers they end with the server, which starts them again when it starts.
"""

from __future__ import annotations

import dataclasses
import uuid
from typing import Any

from shipyard.compute.local._hosting import ModelRequest, ModelServer, ModelServerError, ModelServers
from shipyard.compute.ray._backend import NAMESPACE, RayBackend, _bundle, _Instance
from shipyard.compute.ray._host import ModelHost
from shipyard.core.catalog import InstanceCatalog
from shipyard.core.placement import plan
from shipyard.envs import PackageSources


class RayModelServer(ModelServer):
    """A model server in a Ray actor."""

    def __init__(self, request: ModelRequest, host: str, port: int, instance: _Instance) -> None:
        super().__init__(request, host, port)
        self.instance = instance

    @property
    def alive(self) -> bool:
        return self.instance.alive

    @property
    def ended(self) -> str:
        return self.instance.lost or "its model server exited"


class RayModelServers(ModelServers):
    """Model servers as Ray actors on the cluster of ``backend``."""

    def __init__(
        self,
        backend: RayBackend,
        catalog: InstanceCatalog,
        sandbox: str,
        sources: PackageSources,
        allow_server_python: bool,
        startup_seconds: float = 600,
    ) -> None:
        import ray

        self._ray = ray
        self._backend = backend
        self._catalog = catalog
        self._host = ray.remote(ModelHost)
        self._sandbox = sandbox
        self._sources = dataclasses.asdict(sources)
        self._allow_server_python = allow_server_python
        self._startup = startup_seconds

    def start(self, request: ModelRequest) -> RayModelServer:
        backend = self._backend
        placement = plan(
            self._catalog.get(request.instance_type),
            1,
            backend.capacity,
            node=backend.largest_node,
            fit_to_machine=True,
        )
        bundle = _bundle(placement.per_instance)
        name = f"{backend.prefix}/{request.endpoint}/{request.variant}/{request.instance_dir.name}-{uuid.uuid4().hex[:6]}"
        actor: Any = self._host.options(
            name=name,
            namespace=NAMESPACE,
            max_restarts=0,
            num_cpus=bundle["CPU"],
            num_gpus=bundle.get("GPU", 0),
            memory=bundle["memory"],
            scheduling_strategy="SPREAD",
        ).remote(name)
        ref = actor.start.remote(
            request, backend.object_store, self._sources, self._allow_server_python, self._sandbox
        )
        try:
            answer: dict[str, Any] = self._ray.get(ref, timeout=self._startup)
        except self._ray.exceptions.GetTimeoutError:
            self._ray.kill(actor)
            raise ModelServerError(
                f"no Ray node had room for a {request.instance_type} model server "
                f"({bundle['CPU']:g} CPUs, {bundle['memory'] / 2**30:.1f} GiB) in {self._startup:g} s"
            ) from None
        except Exception as exc:
            self._ray.kill(actor)
            raise ModelServerError(f"the model server could not start on Ray: {exc}") from None
        instance = backend.follow(name, actor, request.instance_dir, answer)
        return RayModelServer(request, answer["ip"], int(answer["port"]), instance)

    def replace(self, dead: ModelServer) -> RayModelServer:
        return self.start(dead.request)

    def stop(self, server: ModelServer) -> None:
        assert isinstance(server, RayModelServer)
        self._backend.release(server.instance)
