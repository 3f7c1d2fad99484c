"""Which backend runs what: one server may send some instance types to Ray and keep the rest local.

Jobs and model servers are routed alike: an instance type's jobs and endpoint instances run on the
same backend (:meth:`Backends.for_type`, :meth:`Backends.model_servers_for`)."""

from __future__ import annotations

import fnmatch
from collections.abc import Callable, Iterator, Sequence

from shipyard.compute._base import Backend, ClusterBill
from shipyard.compute._serving import ModelServers
from shipyard.errors import ConfigurationError


class Backends:
    """The backends of one server. ``routes`` are (instance-type pattern, backend) pairs, tried in
    order (``ml.g*`` matches with shell wildcards); every other type goes to ``default``.

    ``models_local``: a type whose backend serves no models (Slurm runs jobs only) has its
    endpoint instances on ``default``'s model servers."""

    def __init__(
        self, default: Backend, routes: Sequence[tuple[str, Backend]] = (), *, models_local: bool = False
    ) -> None:
        self.default = default
        self._models_local = models_local
        self._routes = list(routes)
        self._by_name = {b.name: b for b in (default, *(b for _, b in self._routes))}
        self._model_servers: dict[str, ModelServers] = {}

    def __iter__(self) -> Iterator[Backend]:
        return iter(self._by_name.values())

    def for_type(self, instance_type: str) -> Backend:
        for pattern, backend in self._routes:
            if fnmatch.fnmatchcase(instance_type, pattern):
                return backend
        return self.default

    def for_endpoints(self, instance_type: str) -> Backend:
        """The backend that runs ``instance_type``'s endpoint instances (a backend that serves
        no models has them on ``default`` with ``models_local``)."""
        backend = self.for_type(instance_type)
        if backend.name not in self._model_servers and self._models_local:
            return self.default
        return backend

    def serve_models(self, backend: str, servers: ModelServers) -> None:
        """Have ``servers`` run the endpoint instances of the instance types ``backend`` runs."""
        self.named(backend)
        self._model_servers[backend] = servers

    def model_servers_for(self, instance_type: str) -> ModelServers:
        """The model servers of the backend that runs ``instance_type``.

        Raises:
            ConfigurationError: that backend serves no models here.
        """
        backend = self.for_endpoints(instance_type)
        try:
            return self._model_servers[backend.name]
        except KeyError:
            raise ConfigurationError(
                f"instance type {instance_type!r} runs on the {backend.name!r} backend, which serves no "
                "models on this server"
            ) from None

    def named(self, name: str) -> Backend:
        """The backend a job was launched on (recorded with it)."""
        try:
            return self._by_name[name]
        except KeyError:
            raise ConfigurationError(
                f"this job runs on the {name!r} backend, which this server is not configured to use "
                f"(it uses {', '.join(sorted(self._by_name))})"
            ) from None

    def on_change(self, callback: Callable[[], None]) -> None:
        for backend in self:
            backend.on_change(callback)

    def on_billed(self, callback: Callable[[ClusterBill], None]) -> None:
        for backend in self:
            backend.on_billed(callback)

    def close(self) -> None:
        for servers in self._model_servers.values():
            servers.close()
        for backend in self:
            backend.close()
