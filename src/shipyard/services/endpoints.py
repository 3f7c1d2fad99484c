"""Models, endpoint configs and endpoints, and the model servers behind InvokeEndpoint.

Models and endpoint configs are records. An endpoint is brought up by a thread of its own: for
each instance of each production variant, the model's artifacts and code are fetched into an
instance folder, its environment resolved (built on first use, as for training jobs), and a model
server started and waited for (``GET /ping``); then it is InService and in the :class:`Router`,
which InvokeEndpoint reads. A monitor replaces model servers that die, keeping the endpoint in
service while others answer. The store keeps what is wanted (status, variants, weights, counts);
running model servers are this process's, so a restarted server brings every endpoint up again.
"""

from __future__ import annotations

import bisect
import contextlib
import dataclasses
import functools
import itertools
import logging
import random
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shipyard.compute import ModelRequest, ModelServer, ModelServerError, ModelServers
from shipyard.core.arn import sagemaker_arn
from shipyard.core.catalog import InstanceCatalog, JobKind
from shipyard.core.hosting import EndpointConfigSpec, EndpointStatus, ModelSpec
from shipyard.core.pagination import decode_token, encode_token
from shipyard.core.training import parse_s3_uri
from shipyard.envs import ImageResolver
from shipyard.errors import NotFoundError, ShipyardError, ValidationError
from shipyard.services.costs import CostService
from shipyard.services.endpoint_metrics import EndpointMetrics
from shipyard.services.training import utcnow
from shipyard.store import Resource, ResourceRepository

log = logging.getLogger(__name__)


def _page(
    repository: ResourceRepository, params: Mapping[str, Any], **filters: Any
) -> tuple[list[Resource], str | None]:
    offset = int(decode_token(params["NextToken"]).get("offset", 0)) if params.get("NextToken") else 0
    limit = int(params.get("MaxResults", 10))
    found = repository.find(
        name_contains=params.get("NameContains"),
        created_after=params.get("CreationTimeAfter"),
        created_before=params.get("CreationTimeBefore"),
        sort_by=params.get("SortBy", "CreationTime"),
        ascending=params.get("SortOrder", "Descending") == "Ascending",
        offset=offset,
        limit=limit + 1,
        **filters,
    )
    if len(found) > limit:
        return found[:limit], encode_token({"offset": offset + limit})
    return found, None


# -- routing ----------------------------------------------------------------------------------------
@dataclasses.dataclass
class LiveVariant:
    name: str
    weight: float
    servers: list[ModelServer]
    instance_type: str = ""
    _next: itertools.count = dataclasses.field(default_factory=itertools.count)

    def pick(self) -> ModelServer | None:
        servers = [s for s in self.servers if s.alive]
        if not servers:
            return None
        return servers[next(self._next) % len(servers)]


class NoRoute(ShipyardError):
    """The endpoint (or the asked variant) has nothing to send a request to."""


class Router:
    """Endpoint name → its variants' running model servers; picks one per request by weight."""

    def __init__(self) -> None:
        self._endpoints: dict[str, list[LiveVariant]] = {}
        self._random = random.Random()

    def set(self, endpoint: str, variants: list[LiveVariant]) -> None:
        self._endpoints[endpoint] = variants

    def remove(self, endpoint: str) -> list[LiveVariant]:
        return self._endpoints.pop(endpoint, [])

    def variants(self, endpoint: str) -> list[LiveVariant]:
        return self._endpoints.get(endpoint, [])

    def names(self) -> list[str]:
        """The endpoints with model servers in the router."""
        return list(self._endpoints)

    def pick(self, endpoint: str, target_variant: str | None = None) -> tuple[LiveVariant, ModelServer]:
        variants = self._endpoints.get(endpoint)
        if variants is None:
            raise NotFoundError(f"Endpoint {endpoint} not found.")
        if target_variant:
            chosen = [v for v in variants if v.name == target_variant]
            if not chosen:
                raise ValidationError(
                    f"The variant {target_variant!r} is not a production variant of endpoint {endpoint!r} "
                    f"({', '.join(v.name for v in variants)})",
                    field="TargetVariant",
                    value=target_variant,
                )
        else:
            chosen = [v for v in variants if v.weight > 0 and any(s.alive for s in v.servers)]
        if len(chosen) > 1:
            totals = list(itertools.accumulate(v.weight for v in chosen))
            variant = chosen[bisect.bisect_right(totals, self._random.random() * totals[-1])]
        elif chosen:
            variant = chosen[0]
        else:
            raise NoRoute(f"Endpoint {endpoint!r} has no model server answering")
        server = variant.pick()
        if server is None:
            raise NoRoute(f"Variant {variant.name!r} of endpoint {endpoint!r} has no model server answering")
        return variant, server


# -- the services ------------------------------------------------------------------------------------
class ModelService:
    def __init__(self, repository: ResourceRepository, resolver: ImageResolver, *, account_id: str) -> None:
        self.repository = repository
        self._resolver = resolver
        self._account_id = account_id

    def create(self, params: Mapping[str, Any], *, region: str) -> Resource:
        spec = ModelSpec.from_request(params)
        self._resolver.resolve(spec.container.image, field="PrimaryContainer.Image")
        for uri, field in (
            (spec.container.model_data_url, "PrimaryContainer.ModelDataUrl"),
            (
                spec.container.submit_directory
                if (spec.container.submit_directory or "").startswith("s3://")
                else None,
                "PrimaryContainer.Environment.SAGEMAKER_SUBMIT_DIRECTORY",
            ),
        ):
            if uri:
                parse_s3_uri(uri, field=field)
        now = utcnow()
        return self.repository.create(
            Resource(
                "model",
                spec.name,
                sagemaker_arn(region, self._account_id, "model", spec.name),
                now,
                dict(params),
            )
        )

    def get(self, name: str) -> tuple[Resource, ModelSpec]:
        model = self.repository.get(name)
        return model, ModelSpec.from_request(model.request)

    def find(self, params: Mapping[str, Any]) -> tuple[list[Resource], str | None]:
        return _page(self.repository, params)

    def delete(self, name: str) -> None:
        self.repository.delete(name)


class EndpointConfigService:
    def __init__(
        self,
        repository: ResourceRepository,
        models: ModelService,
        catalog: InstanceCatalog,
        *,
        account_id: str,
    ) -> None:
        self.repository = repository
        self._models = models
        self._catalog = catalog
        self._account_id = account_id

    def create(self, params: Mapping[str, Any], *, region: str) -> Resource:
        spec = EndpointConfigSpec.from_request(params)
        for index, variant in enumerate(spec.variants):
            field = f"ProductionVariants.{index}"
            try:
                self._models.repository.get(variant.model)
            except NotFoundError:
                raise ValidationError(
                    f"Could not find model {variant.model!r} (for variant {variant.name!r})",
                    field=f"{field}.ModelName",
                    value=variant.model,
                ) from None
            instance_type = self._catalog.get(variant.instance_type)
            if not instance_type.supports(JobKind.HOSTING):
                raise ValidationError(
                    f"Instance type {variant.instance_type!r} is not offered for endpoints",
                    field=f"{field}.InstanceType",
                    value=variant.instance_type,
                )
        arn = sagemaker_arn(region, self._account_id, "endpoint-config", spec.name)
        return self.repository.create(Resource("endpoint-config", spec.name, arn, utcnow(), dict(params)))

    def get(self, name: str) -> tuple[Resource, EndpointConfigSpec]:
        config = self.repository.get(name)
        return config, EndpointConfigSpec.from_request(config.request)

    def find(self, params: Mapping[str, Any]) -> tuple[list[Resource], str | None]:
        return _page(self.repository, params)

    def delete(self, name: str) -> None:
        self.repository.delete(name)


class EndpointService:
    """Endpoints, and the model servers that serve them (see the module docstring)."""

    def __init__(
        self,
        repository: ResourceRepository,
        configs: EndpointConfigService,
        models: ModelService,
        servers: Callable[[str], ModelServers],
        resolver: ImageResolver,
        costs: CostService,
        *,
        endpoints_dir: Path,
        account_id: str,
        startup_timeout: float = 600.0,
        drain_seconds: float = 30.0,
    ) -> None:
        self.repository = repository
        self.costs = costs
        self.router = Router()
        self.metrics = EndpointMetrics()
        self._configs = configs
        self._models = models
        self._servers = servers  # by instance type
        self._resolver = resolver
        self._dir = endpoints_dir
        self._account_id = account_id
        self._timeout = startup_timeout
        self._drain = drain_seconds
        self._lock = threading.Lock()
        self._deleting: set[str] = set()
        self._stop = threading.Event()
        self._monitor: threading.Thread | None = None

    # -- API operations ------------------------------------------------------------------------------
    def create(self, params: Mapping[str, Any], *, region: str, owner: str | None = None) -> Resource:
        name = params["EndpointName"]
        _, config = self._configs.get(params["EndpointConfigName"])
        now = utcnow()
        endpoint = Resource(
            "endpoint",
            name,
            sagemaker_arn(region, self._account_id, "endpoint", name),
            now,
            dict(params),
            state={"config": config.name, "variants": _variant_state(config), "owner": owner},
            status=EndpointStatus.CREATING.value,
            last_modified=now,
        )
        self.repository.create(endpoint)
        self._later(self._bring_up, name)
        return endpoint

    def get(self, name: str) -> Resource:
        return self.repository.get(name)

    def find(self, params: Mapping[str, Any]) -> tuple[list[Resource], str | None]:
        return _page(self.repository, params, status=params.get("StatusEquals"))

    def live_count(self, endpoint: str, variant: str) -> int:
        return sum(
            sum(1 for s in v.servers if s.alive) for v in self.router.variants(endpoint) if v.name == variant
        )

    def update(self, params: Mapping[str, Any]) -> Resource:
        """UpdateEndpoint: the new config's model servers come up beside the old ones, traffic moves
        to them at once, and the old ones are stopped when their requests are answered."""
        name = params["EndpointName"]
        _, config = self._configs.get(params["EndpointConfigName"])
        endpoint = self._begin_update(name, {"updating_to": config.name})
        self._later(self._roll_out, name, config)
        return endpoint

    def update_weights_and_capacities(self, params: Mapping[str, Any]) -> Resource:
        name = params["EndpointName"]
        endpoint = self.repository.get(name)
        by_name = {v["name"]: v for v in endpoint.state["variants"]}
        wanted: dict[str, dict[str, Any]] = {}
        for index, item in enumerate(params["DesiredWeightsAndCapacities"]):
            field = f"DesiredWeightsAndCapacities.{index}"
            variant = item["VariantName"]
            if variant not in by_name:
                raise ValidationError(
                    f"The variant {variant!r} is not a production variant of endpoint {name!r} "
                    f"({', '.join(by_name)})",
                    field=f"{field}.VariantName",
                    value=variant,
                )
            change: dict[str, Any] = {}
            if item.get("DesiredWeight") is not None:
                if item["DesiredWeight"] < 0:
                    raise ValidationError(
                        f"DesiredWeight must not be negative, got {item['DesiredWeight']:g}",
                        field=f"{field}.DesiredWeight",
                        value=item["DesiredWeight"],
                    )
                change["weight"] = float(item["DesiredWeight"])
            if item.get("DesiredInstanceCount") is not None:
                if item["DesiredInstanceCount"] < 1:
                    raise ValidationError(
                        f"DesiredInstanceCount must be at least 1, got {item['DesiredInstanceCount']}",
                        field=f"{field}.DesiredInstanceCount",
                        value=item["DesiredInstanceCount"],
                    )
                change["instance_count"] = int(item["DesiredInstanceCount"])
            wanted[variant] = change
        weights = {v: c["weight"] for v, c in wanted.items() if "weight" in c}
        after = [{**v, **wanted.get(v["name"], {})} for v in endpoint.state["variants"]]
        if not any(v["weight"] > 0 for v in after):
            raise ValidationError(
                "At least one production variant must keep a positive weight",
                field="DesiredWeightsAndCapacities",
            )
        endpoint = self._begin_update(name, {"variants": after})
        for variant in self.router.variants(name):  # weights apply at once
            if variant.name in weights:
                variant.weight = weights[variant.name]
        self._later(self._rescale, name)
        return endpoint

    def delete(self, name: str) -> None:
        self.repository.get(name)
        with self._lock:
            self._deleting.add(name)
        try:
            for variant in self.router.remove(name):
                for server in variant.servers:
                    self._pool(server).stop(server)
                    self._close_usage(name, server)
            self.repository.delete(name)
            shutil.rmtree(self._dir / name, ignore_errors=True)
        finally:
            with self._lock:
                self._deleting.discard(name)

    # -- bringing endpoints up -----------------------------------------------------------------------
    def start(self) -> None:
        """Bring up every endpoint the store says should serve (after a server start), and watch."""
        self.costs.usage.close_abandoned("endpoint")  # a server that died left them open
        for status in (EndpointStatus.IN_SERVICE, EndpointStatus.CREATING, EndpointStatus.UPDATING):
            for endpoint in self.repository.find(status=status.value, limit=100_000):
                self._later(self._bring_up, endpoint.name)
        self._monitor = threading.Thread(target=self._watch, name="shipyard-endpoints", daemon=True)
        self._monitor.start()

    def close(self) -> None:
        self._stop.set()
        for endpoint in self.router.names():
            for variant in self.router.remove(endpoint):
                for server in variant.servers:
                    self._pool(server).stop(server)
                    self._close_usage(endpoint, server)

    def _later(self, work: Callable[..., None], name: str, *args: Any) -> None:
        threading.Thread(
            target=work, args=(name, *args), name=f"shipyard-endpoint-{name}", daemon=True
        ).start()

    def _gone(self, name: str) -> bool:
        with self._lock:
            return name in self._deleting or self._stop.is_set()

    def _begin_update(self, name: str, changes: Mapping[str, Any]) -> Resource:
        def change(endpoint: Resource) -> Resource:
            if endpoint.status != EndpointStatus.IN_SERVICE.value or name not in self.router.names():
                raise ValidationError(
                    f"Cannot update endpoint {name!r} while it is {endpoint.status}; wait until it is InService",
                    field="EndpointName",
                    value=name,
                )
            state = {**endpoint.state, **changes, "failure_reason": None}
            return dataclasses.replace(
                endpoint, status=EndpointStatus.UPDATING.value, state=state, last_modified=utcnow()
            )

        return self.repository.modify(name, change)

    def _bring_up(self, name: str) -> None:
        """Start the endpoint's variants as the store has them (create, or after a server start)."""
        try:
            endpoint = self.repository.get(name)
            live = self._start_variants(name, endpoint.state["variants"])
            self.router.set(name, live)
            self._open_usage(endpoint, live)
            self._settle(name, EndpointStatus.IN_SERVICE, None)
            log.info("Endpoint %s: InService", name)
        except Exception as exc:
            self._settle(name, EndpointStatus.FAILED, _reason(exc, name))

    def _roll_out(self, name: str, config: EndpointConfigSpec) -> None:
        try:
            live = self._start_variants(name, _variant_state(config))
        except Exception as exc:  # the old config keeps serving
            self._settle(
                name,
                EndpointStatus.IN_SERVICE,
                f"Updating failed, kept the previous config: {_reason(exc, name)}",
            )
            return
        old = self.router.variants(name)
        self.router.set(name, live)
        with contextlib.suppress(NotFoundError):
            self._open_usage(self.repository.get(name), live)
        self._settle(
            name,
            EndpointStatus.IN_SERVICE,
            None,
            config=config.name,
            variants=_variant_state(config),
            updating_to=None,
        )
        self._retire(name, [s for v in old for s in v.servers])
        log.info("Endpoint %s: now serving endpoint config %s", name, config.name)

    def _rescale(self, name: str) -> None:
        """Start or stop model servers until each variant has its desired instance count."""
        try:
            wanted = {v["name"]: v for v in self.repository.get(name).state["variants"]}
            surplus: list[ModelServer] = []
            for variant in self.router.variants(name):
                spec = wanted[variant.name]
                missing = spec["instance_count"] - len(variant.servers)
                if missing > 0:
                    [extra] = self._start_variants(name, [{**spec, "instance_count": missing}])
                    variant.servers = [*variant.servers, *extra.servers]
                    self._open_usage(self.repository.get(name), [extra])
                elif missing < 0:
                    surplus += variant.servers[missing:]
                    variant.servers = variant.servers[:missing]
            self._settle(name, EndpointStatus.IN_SERVICE, None)
            self._retire(name, surplus)
        except Exception as exc:
            self._settle(name, EndpointStatus.IN_SERVICE, f"Scaling failed: {_reason(exc, name)}")

    def _start_variants(self, name: str, variants: list[dict[str, Any]]) -> list[LiveVariant]:
        """Model servers for ``variants``, all healthy; none left running if one fails."""
        started: list[ModelServer] = []
        try:
            live = []
            for variant in variants:
                _, model = self._models.get(variant["model"])
                servers = []
                for _ in range(variant["instance_count"]):
                    if self._gone(name):
                        raise ModelServerError("the endpoint is being deleted")
                    request = self._request(name, variant, model)
                    server = self._servers(request.instance_type).start(request)
                    started.append(server)
                    servers.append(server)
                for server in servers:
                    self._pool(server).wait_healthy(
                        server, self._timeout, gone=functools.partial(self._gone, name)
                    )
                live.append(
                    LiveVariant(variant["name"], variant["weight"], servers, variant["instance_type"])
                )
            if self._gone(name):
                raise ModelServerError("the endpoint is being deleted")
            return live
        except BaseException:
            for server in started:
                self._pool(server).stop(server)
            raise

    def _retire(self, name: str, servers: list[ModelServer]) -> None:
        """Stop model servers taken out of the router once their requests are answered."""
        deadline = time.monotonic() + self._drain
        for server in servers:
            while server.in_flight and time.monotonic() < deadline:
                time.sleep(0.01)
            self._pool(server).stop(server)
            self._close_usage(name, server)
            shutil.rmtree(server.instance_dir / "ml", ignore_errors=True)  # its log stays

    def _request(self, endpoint: str, variant: Mapping[str, Any], model: ModelSpec) -> ModelRequest:
        folder = (
            self._dir / endpoint / variant["name"] / f"i-{uuid.uuid4().hex[:17]}"
        )  # an instance id, as in AWS
        folder.mkdir(parents=True)
        return ModelRequest(
            instance_dir=folder,
            endpoint=endpoint,
            variant=variant["name"],
            instance_type=variant["instance_type"],
            container=model.container,
            environment=self._resolver.resolve(model.container.image, field="PrimaryContainer.Image"),
        )

    def _pool(self, server: ModelServer) -> ModelServers:
        return self._servers(server.request.instance_type)

    # -- the usage ledger: each model server is an instance in use while it serves ------------------
    def _open_usage(self, endpoint: Resource, live: list[LiveVariant]) -> None:
        now = utcnow()
        for variant in live:
            for server in variant.servers:
                self.costs.instances_started(
                    _usage_key(endpoint.name, server),
                    kind="endpoint",
                    name=endpoint.name,
                    arn=endpoint.arn,
                    instance_type=variant.instance_type,
                    count=1,
                    work=JobKind.HOSTING,
                    at=now,
                    owner=endpoint.state.get("owner"),
                )

    def _close_usage(self, name: str, server: ModelServer) -> None:
        self.costs.usage.close(_usage_key(name, server), utcnow())

    def _settle(self, name: str, status: EndpointStatus, reason: str | None, **changes: Any) -> None:
        """Record where an operation left the endpoint (unless it was deleted meanwhile)."""
        if self._gone(name):
            return

        def change(endpoint: Resource) -> Resource:
            state = {**endpoint.state, **changes, "failure_reason": reason}
            return dataclasses.replace(endpoint, status=status.value, state=state, last_modified=utcnow())

        with contextlib.suppress(NotFoundError):  # deleted meanwhile
            self.repository.modify(name, change)

    # -- keeping them up -----------------------------------------------------------------------------
    def _watch(self) -> None:
        replacing: set[int] = set()  # ids of dead servers being replaced
        last_seen = time.monotonic()
        while not self._stop.wait(0.5):
            if time.monotonic() - last_seen >= 60:  # bounds what a dead server leaves open
                last_seen = time.monotonic()
                keys = [
                    _usage_key(endpoint, s)
                    for endpoint in self.router.names()
                    for v in self.router.variants(endpoint)
                    for s in v.servers
                ]
                try:
                    self.costs.usage.seen(keys, utcnow())
                except Exception:
                    log.exception("Recording endpoint usage failed")
            for endpoint in self.router.names():
                for variant in self.router.variants(endpoint):
                    for server in variant.servers:
                        if server.alive or id(server) in replacing or self._gone(endpoint):
                            continue
                        replacing.add(id(server))
                        self._later(self._replace, endpoint, variant, server, replacing)

    def _replace(self, endpoint: str, variant: LiveVariant, dead: ModelServer, replacing: set[int]) -> None:
        log.warning(
            "Endpoint %s: the model server %s/%s ended (%s); replacing it",
            endpoint,
            variant.name,
            dead.instance_dir.name,
            dead.ended,
        )
        pool = self._pool(dead)
        try:
            replacement = pool.replace(dead)
            pool.wait_healthy(replacement, self._timeout, gone=functools.partial(self._gone, endpoint))
        except Exception:
            log.exception("Endpoint %s: replacing a model server failed", endpoint)
            replacing.discard(id(dead))  # try again at the next look
            return
        if not any(v is variant for v in self.router.variants(endpoint)):  # updated meanwhile
            pool.stop(replacement)
        else:
            variant.servers = [replacement if s is dead else s for s in variant.servers]
        replacing.discard(id(dead))


def _usage_key(endpoint: str, server: ModelServer) -> str:
    return f"endpoint/{endpoint}/{server.instance_dir.parent.name}/{server.instance_dir.name}"


def _reason(exc: BaseException, name: str) -> str:
    if isinstance(exc, ShipyardError):
        return exc.message
    if not isinstance(exc, ModelServerError):
        log.error("Endpoint %s: %s", name, exc, exc_info=exc)
    return str(exc)


def _variant_state(config: EndpointConfigSpec) -> list[dict[str, Any]]:
    return [
        {
            "name": v.name,
            "model": v.model,
            "instance_type": v.instance_type,
            "instance_count": v.instance_count,
            "weight": v.weight,
        }
        for v in config.variants
    ]


__all__ = ["EndpointConfigService", "EndpointService", "ModelService", "NoRoute", "Router"]
