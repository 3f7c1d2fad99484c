"""The live variants of every endpoint: what InvokeEndpoint picks a model server from.

The router is the one place live variants change, always under its lock: the endpoint reconciler
puts an endpoint's variants in service, swaps them for an update's, adds, retires and replaces
model servers; UpdateEndpointWeightsAndCapacities changes weights. Readers (InvokeEndpoint,
DescribeEndpoint, the waste pass) get variants whose server lists are never changed in place.
"""

from __future__ import annotations

import bisect
import dataclasses
import itertools
import random
import threading
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING

from shipyard.compute import ModelRequest, ModelServer
from shipyard.errors import NotFoundError, ShipyardError, ValidationError

# SageMaker's answer to InvokeEndpoint on an endpoint for inference components without one named.
COMPONENT_REQUIRED = (
    "Inference Component Name header is required for endpoints to which you plan to deploy "
    "inference components. Please include Inference Component Name header or consider using "
    "SageMaker models."
)

if TYPE_CHECKING:
    from shipyard.services._serverless import ServerlessState


@dataclasses.dataclass
class LiveVariant:
    """A production variant in service: its weight now and its model servers (a tuple, replaced
    whole by the router, so that a reader may iterate it while the router changes it)."""

    name: str
    weight: float
    servers: tuple[ModelServer, ...]
    instance_type: str = ""
    _next: itertools.count[int] = dataclasses.field(default_factory=itertools.count)
    serverless: ServerlessState | None = None  # a serverless variant's demand (``_serverless.py``)
    components: bool = False  # capacity for inference components: its servers are CapacityInstances

    def pick(self) -> ModelServer | None:
        servers = [s for s in self.servers if s.alive]
        if not servers:
            return None
        return servers[next(self._next) % len(servers)]


class CapacityInstance(ModelServer):
    """An instance of a variant for inference components: capacity that components' copies are
    placed on, billed as any endpoint instance, running no model server of its own (its address
    answers nothing; the router never sends a request to it)."""

    def __init__(self, request: ModelRequest) -> None:
        super().__init__(request, "", 0)
        self._released = False

    @property
    def alive(self) -> bool:
        return not self._released

    @property
    def ended(self) -> str:
        return "released" if self._released else "running"

    def release(self) -> None:
        self._released = True


class NoRoute(ShipyardError):
    """The endpoint (or the asked variant) has nothing to send a request to."""


class Router:
    """Endpoint name → its variants' running model servers; picks one per request by weight."""

    def __init__(self) -> None:
        self._endpoints: dict[str, list[LiveVariant]] = {}
        self._random = random.Random()
        self._lock = threading.Lock()

    # -- reading --------------------------------------------------------------------------------------
    def variants(self, endpoint: str) -> list[LiveVariant]:
        with self._lock:
            return list(self._endpoints.get(endpoint, []))

    def names(self) -> list[str]:
        """The endpoints with model servers in the router."""
        with self._lock:
            return list(self._endpoints)

    def serving(self, endpoint: str) -> bool:
        with self._lock:
            return endpoint in self._endpoints

    def servers(self, endpoint: str) -> list[ModelServer]:
        """Every model server of the endpoint in the router."""
        with self._lock:
            return [s for v in self._endpoints.get(endpoint, []) for s in v.servers]

    def pick(self, endpoint: str, target_variant: str | None = None) -> tuple[LiveVariant, ModelServer]:
        """A variant by weight (or the one asked for) and one of its model servers. A serverless
        variant is chosen with or without one running: its request gets its model server from the
        :class:`~shipyard.services._serverless.ServerlessPool` (scaled to zero, the server given
        here is the stopped one cold starts copy)."""
        with self._lock:
            variants = self._endpoints.get(endpoint)
            if variants is None:
                raise NotFoundError(f"Endpoint {endpoint} not found.")
            if any(v.components for v in variants):
                raise ValidationError(COMPONENT_REQUIRED, field="InferenceComponentName")
            if target_variant:
                chosen = [v for v in variants if v.name == target_variant]
                if not chosen:
                    raise ValidationError(
                        f"The variant {target_variant!r} is not a production variant of endpoint "
                        f"{endpoint!r} ({', '.join(v.name for v in variants)})",
                        field="TargetVariant",
                        value=target_variant,
                    )
            elif len(variants) == 1:  # the usual endpoint: its servers' liveness is asked once, by pick
                chosen = variants if variants[0].weight > 0 else []
            else:
                chosen = [
                    v
                    for v in variants
                    if v.weight > 0 and (v.serverless is not None or any(s.alive for s in v.servers))
                ]
            if len(chosen) > 1:
                totals = list(itertools.accumulate(v.weight for v in chosen))
                variant = chosen[bisect.bisect_right(totals, self._random.random() * totals[-1])]
            elif chosen:
                variant = chosen[0]
            else:
                raise NoRoute(f"Endpoint {endpoint!r} has no model server answering")
            server = variant.pick()
        if server is None and variant.serverless is None and not target_variant and len(variants) == 1:
            raise NoRoute(f"Endpoint {endpoint!r} has no model server answering")
        if server is None and variant.serverless is not None:
            server = variant.serverless.template  # scaled to zero: its request starts one like it
        if server is None:
            raise NoRoute(f"Variant {variant.name!r} of endpoint {endpoint!r} has no model server answering")
        return variant, server

    # -- changing (the endpoint service's) ---------------------------------------------------------
    def set(self, endpoint: str, variants: list[LiveVariant]) -> list[LiveVariant]:
        """Put ``variants`` in service; returns those they replace (an update's old ones)."""
        with self._lock:
            old = self._endpoints.get(endpoint, [])
            self._endpoints[endpoint] = list(variants)
            return old

    def remove(self, endpoint: str) -> list[LiveVariant]:
        with self._lock:
            return self._endpoints.pop(endpoint, [])

    def set_weights(self, endpoint: str, weights: Mapping[str, float]) -> None:
        with self._lock:
            for variant in self._endpoints.get(endpoint, []):
                if variant.name in weights:
                    variant.weight = weights[variant.name]

    def add(self, endpoint: str, variant: str, servers: Iterable[ModelServer]) -> bool:
        """Add model servers to a variant in service; False when it is no longer in service."""
        with self._lock:
            for live in self._endpoints.get(endpoint, []):
                if live.name == variant:
                    live.servers = (*live.servers, *servers)
                    return True
            return False

    def take(self, endpoint: str, variant: str, count: int) -> list[ModelServer]:
        """Take the last ``count`` model servers of a variant out of service; returns them."""
        with self._lock:
            for live in self._endpoints.get(endpoint, []):
                if live.name == variant and count > 0:
                    taken = live.servers[-count:]
                    live.servers = live.servers[:-count]
                    return list(taken)
            return []

    def holds(self, endpoint: str, variant: LiveVariant) -> bool:
        """Whether ``variant`` (this very one, not an update's of the same name) is in service."""
        with self._lock:
            return any(v is variant for v in self._endpoints.get(endpoint, []))

    def add_to(self, endpoint: str, variant: LiveVariant, servers: Iterable[ModelServer]) -> bool:
        """Add model servers to ``variant`` itself; False when it is no longer in service."""
        with self._lock:
            if not any(v is variant for v in self._endpoints.get(endpoint, [])):
                return False
            variant.servers = (*variant.servers, *servers)
            return True

    def drop(self, endpoint: str, variant: LiveVariant, servers: Iterable[ModelServer]) -> None:
        """Take ``servers`` out of ``variant`` (a serverless variant scaling in)."""
        gone = {id(s) for s in servers}
        with self._lock:
            variant.servers = tuple(s for s in variant.servers if id(s) not in gone)

    def swap(self, endpoint: str, dead: ModelServer, replacement: ModelServer) -> bool:
        """Put ``replacement`` where ``dead`` served; False when ``dead`` is no longer in service
        (its endpoint was updated or deleted meanwhile)."""
        with self._lock:
            for live in self._endpoints.get(endpoint, []):
                if any(s is dead for s in live.servers):
                    live.servers = tuple(replacement if s is dead else s for s in live.servers)
                    return True
            return False
