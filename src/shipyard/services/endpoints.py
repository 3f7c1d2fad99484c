"""Models, endpoint configs and endpoints, and the model servers behind InvokeEndpoint.

Models and endpoint configs are records. An endpoint's record says what is wanted (its status,
config, variants with their weights and instance counts); the API calls change it with the rules
of :class:`~shipyard.core.hosting.EndpointState` and wake the :class:`EndpointReconciler`
(``_reconciler.py``), whose one loop brings the live model servers to it: for each instance of
each production variant, the model's artifacts and code are fetched into an instance folder, its
environment resolved (built on first use, as for training jobs), and a model server started and
waited for (``GET /ping``); then the endpoint is InService and in the :class:`Router`
(``_router.py``), which InvokeEndpoint reads. Model servers that die are replaced, the others
serving meanwhile. Running model servers are this process's, so a restarted server brings every
endpoint up again. A serverless variant (``ServerlessConfig``) runs a model server only while it
has requests (``_serverless.py``).
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
from collections.abc import Callable, Mapping
from concurrent.futures import Executor
from pathlib import Path
from typing import Any

from shipyard.compute import ModelServers
from shipyard.core import estimates
from shipyard.core.arn import sagemaker_arn
from shipyard.core.catalog import InstanceCatalog, JobKind
from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.estimates import Prices
from shipyard.core.hosting import EndpointConfigSpec, EndpointState, EndpointStatus, ModelSpec
from shipyard.core.inference_components import KIND
from shipyard.core.pagination import Page
from shipyard.core.quotas import Quotas
from shipyard.core.training import parse_s3_uri
from shipyard.envs import ImageResolver
from shipyard.errors import NotFoundError, ValidationError
from shipyard.services._claims import NO_CLAIMS, Claims
from shipyard.services._guard import LaunchGuard, no_guard, request_tags
from shipyard.services._reconciler import EndpointReconciler
from shipyard.services._router import LiveVariant, NoRoute, Router
from shipyard.services.costs import CostService
from shipyard.services.endpoint_metrics import EndpointMetrics
from shipyard.services.inference_components import InferenceComponentService
from shipyard.services.quotas import QuotaService
from shipyard.store import Resource, ResourceRepository

log = logging.getLogger(__name__)


def _page(
    repository: ResourceRepository, params: Mapping[str, Any], **filters: Any
) -> tuple[list[Resource], str | None]:
    page = Page.requested(params, default_size=10)
    found = repository.find(
        name_contains=params.get("NameContains"),
        created_after=params.get("CreationTimeAfter"),
        created_before=params.get("CreationTimeBefore"),
        sort_by=params.get("SortBy", "CreationTime"),
        ascending=params.get("SortOrder", "Descending") == "Ascending",
        offset=page.offset,
        limit=page.limit,
        **filters,
    )
    return page.cut(found)


# -- the services ------------------------------------------------------------------------------------
class ModelService:
    def __init__(
        self,
        repository: ResourceRepository,
        resolver: ImageResolver,
        *,
        account_id: str,
        clock: Clock = SYSTEM_CLOCK,
        claims: Claims = NO_CLAIMS,
        packages: Callable[[Mapping[str, Any]], Mapping[str, Any]] = dict,
    ) -> None:
        self.repository = repository
        self._claims = claims
        self._resolver = resolver
        self._account_id = account_id
        self._clock = clock
        self._packages = packages  # a container's ModelPackageName, filled from the registry

    def create(self, params: Mapping[str, Any], *, region: str, owner: str | None = None) -> Resource:
        params = self._packages(params)
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
        now = self._clock.now()
        model = self.repository.create(
            Resource(
                "model",
                spec.name,
                sagemaker_arn(region, self._account_id, "model", spec.name),
                now,
                dict(params),
            )
        )
        self._claims.claim_for(model.arn, owner)
        return model

    def get(self, name: str) -> tuple[Resource, ModelSpec]:
        model = self.repository.get(name)
        return model, ModelSpec.from_request(model.request)

    def find(self, params: Mapping[str, Any]) -> tuple[list[Resource], str | None]:
        return _page(self.repository, params)

    def delete(self, name: str) -> None:
        arn = self.repository.get(name).arn
        self.repository.delete(name)
        self._claims.forget(arn)


class EndpointConfigService:
    def __init__(
        self,
        repository: ResourceRepository,
        models: ModelService,
        catalog: InstanceCatalog,
        *,
        account_id: str,
        clock: Clock = SYSTEM_CLOCK,
        quotas: Quotas = Quotas(),
        claims: Claims = NO_CLAIMS,
    ) -> None:
        self.repository = repository
        self._claims = claims
        self._models = models
        self._catalog = catalog
        self._quotas = quotas
        self._account_id = account_id
        self._clock = clock

    def create(self, params: Mapping[str, Any], *, region: str, owner: str | None = None) -> Resource:
        spec = EndpointConfigSpec.from_request(params)
        for index, variant in enumerate(spec.variants):
            field = f"ProductionVariants.{index}"
            try:
                if not variant.for_components:
                    self._models.repository.get(variant.model)
            except NotFoundError:
                raise ValidationError(
                    f"Could not find model {variant.model!r} (for variant {variant.name!r})",
                    field=f"{field}.ModelName",
                    value=variant.model,
                ) from None
            if variant.serverless is not None:  # no instances: its model server starts on demand
                continue
            instance_type = self._catalog.get(variant.instance_type)
            if not instance_type.supports(JobKind.HOSTING):
                raise ValidationError(
                    f"Instance type {variant.instance_type!r} is not offered for endpoints",
                    field=f"{field}.InstanceType",
                    value=variant.instance_type,
                )
            self._quotas.check_variant(variant.instance_type, variant.instance_count)
        arn = sagemaker_arn(region, self._account_id, "endpoint-config", spec.name)
        config = self.repository.create(
            Resource("endpoint-config", spec.name, arn, self._clock.now(), dict(params))
        )
        self._claims.claim_for(config.arn, owner)
        return config

    def get(self, name: str) -> tuple[Resource, EndpointConfigSpec]:
        config = self.repository.get(name)
        return config, EndpointConfigSpec.from_request(config.request)

    def find(self, params: Mapping[str, Any]) -> tuple[list[Resource], str | None]:
        return _page(self.repository, params)

    def delete(self, name: str) -> None:
        arn = self.repository.get(name).arn
        self.repository.delete(name)
        self._claims.forget(arn)


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
        serverless_idle_seconds: float = 300.0,
        clock: Clock = SYSTEM_CLOCK,
        workers: Executor | None = None,
        guard: LaunchGuard = no_guard,
        tags_of: Callable[[str], Mapping[str, str]] | None = None,
        quotas: Quotas = Quotas(),
        claims: Claims = NO_CLAIMS,
        user_quotas: QuotaService | None = None,
        components: ResourceRepository | None = None,
        catalog: InstanceCatalog | None = None,
    ) -> None:
        self.repository = repository
        self._claims = claims
        self._quotas = quotas
        self._user_quotas = user_quotas  # endpoint instances by user and group
        self.costs = costs
        self._guard = guard  # the budgets, asked on create and update
        self._tags_of = tags_of or (lambda arn: {})
        self.router = Router()
        self.metrics = EndpointMetrics()
        self._configs = configs
        self._account_id = account_id
        self._clock = clock
        self.reconciler = EndpointReconciler(
            repository,
            self.router,
            servers,
            lambda name: models.get(name)[1],
            lambda name: configs.get(name)[1],
            resolver,
            costs,
            clock,
            endpoints_dir=endpoints_dir,
            startup_timeout=startup_timeout,
            drain_seconds=drain_seconds,
            workers=workers,
            serverless_idle_seconds=serverless_idle_seconds,
        )
        self.serverless = self.reconciler.serverless  # serverless variants' requests (InvokeEndpoint's)
        # Inference components, on endpoints whose variants name no model; the same loop drives them.
        self.components = InferenceComponentService(
            components or ResourceRepository(repository.db, KIND, "Inference component"),
            repository,
            self.router,
            servers,
            models.get,
            resolver,
            catalog or InstanceCatalog.load(),
            account_id=account_id,
            routing=self._routing,
            clock=clock,
            workers=self.reconciler.workers,
            startup_timeout=startup_timeout,
            drain_seconds=drain_seconds,
            claims=claims,
            wake=self.reconciler.wake,
            endpoints_dir=endpoints_dir,
        )
        self.reconciler.passes.append(self.components.tick)

    def _routing(self, endpoint: str, variant: str) -> str:
        """The RoutingStrategy of an endpoint's variant (its config's RoutingConfig)."""
        with contextlib.suppress(NotFoundError):
            config = self._configs.get(self.repository.get(endpoint).state["config"])[0]
            for raw in config.request["ProductionVariants"]:
                if raw["VariantName"] == variant:
                    return str((raw.get("RoutingConfig") or {}).get("RoutingStrategy") or "RANDOM")
        return "RANDOM"

    # -- API operations ------------------------------------------------------------------------------
    def _reckon(self, params: Mapping[str, Any], prices: Prices) -> estimates.Estimate:
        """An endpoint's worst case from the configuration its request names (a day of it)."""
        config, _ = self._configs.get(params["EndpointConfigName"])
        return estimates.endpoint(config.request["ProductionVariants"], prices)

    def _check_instances(self, name: str, count: int, owner: str | None) -> None:
        """The endpoint-instances quotas, for ``name`` (``owner``'s) to have ``count``
        instances: the site's, and its owner's and their groups' (each variant's count was
        checked with its config, or is checked by the caller)."""
        by_owner: dict[str | None, int] = {}
        for endpoint in self.repository.find(limit=100_000):
            if endpoint.name != name and endpoint.status != EndpointStatus.FAILED.value:
                state = EndpointState.from_record(endpoint.status, endpoint.state)
                who = endpoint.state.get("owner")
                by_owner[who] = by_owner.get(who, 0) + sum(v.instance_count for v in state.variants)
        self._quotas.check_endpoint(count, in_use=sum(by_owner.values()))
        if self._user_quotas is not None:
            self._user_quotas.check_endpoints(owner, count, lambda: by_owner)

    def create(self, params: Mapping[str, Any], *, region: str, owner: str | None = None) -> Resource:
        name = params["EndpointName"]
        with self._guard("endpoint", name, self._reckon, params, request_tags(params), owner=owner):
            return self._create(params, region=region, owner=owner)

    def _create(self, params: Mapping[str, Any], *, region: str, owner: str | None) -> Resource:
        name = params["EndpointName"]
        _, config = self._configs.get(params["EndpointConfigName"])
        self._check_instances(name, sum(v.instance_count for v in config.variants), owner)
        now = self._clock.now()
        state = EndpointState.new(config)
        endpoint = Resource(
            "endpoint",
            name,
            sagemaker_arn(region, self._account_id, "endpoint", name),
            now,
            dict(params),
            state={**state.to_record(), "owner": owner},
            status=state.status.value,
            last_modified=now,
        )
        self.repository.create(endpoint)
        self._claims.claim_for(endpoint.arn, owner)
        self.reconciler.wake()
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
        endpoint = self.get(name)
        tags = self._tags_of(endpoint.arn)
        owner = endpoint.state.get("owner")  # its creator's budgets, whoever updates it
        with self._guard("endpoint", name, self._reckon, params, tags, owner=owner):
            _, config = self._configs.get(params["EndpointConfigName"])
            self._check_instances(name, sum(v.instance_count for v in config.variants), owner)
            return self._change(
                name, lambda s: s.update(name, config.name, serving=self.router.serving(name))
            )

    def update_weights_and_capacities(self, params: Mapping[str, Any]) -> Resource:
        """Weights change at once; the reconciler starts or retires instances for new counts."""
        name = params["EndpointName"]
        endpoint = self.repository.get(name)
        variants = {v.name: v for v in EndpointState.from_record(endpoint.status, endpoint.state).variants}
        wanted: dict[str, dict[str, Any]] = {}
        for index, item in enumerate(params["DesiredWeightsAndCapacities"]):
            field = f"DesiredWeightsAndCapacities.{index}"
            variant = item["VariantName"]
            if variant not in variants:
                raise ValidationError(
                    f"The variant {variant!r} is not a production variant of endpoint {name!r} "
                    f"({', '.join(variants)})",
                    field=f"{field}.VariantName",
                    value=variant,
                )
            if variants[variant].serverless is not None and item.get("DesiredInstanceCount") is not None:
                raise ValidationError(
                    f"The variant {variant!r} of endpoint {name!r} is serverless: it has no instance "
                    "count to change (its model server starts and stops with its requests)",
                    field=f"{field}.DesiredInstanceCount",
                    value=item["DesiredInstanceCount"],
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
                self._quotas.check_variant(variants[variant].instance_type, change["instance_count"])
            wanted[variant] = change
        after = [dataclasses.replace(v, **wanted.get(v.name, {})) for v in variants.values()]
        self._check_instances(name, sum(v.instance_count for v in after), endpoint.state.get("owner"))
        endpoint = self._change(name, lambda s: s.rescale(name, after, serving=self.router.serving(name)))
        self.router.set_weights(name, {v: c["weight"] for v, c in wanted.items() if "weight" in c})
        return endpoint

    def delete(self, name: str, *, with_components: bool = False) -> None:
        """Stop the endpoint's model servers and forget it (when this returns, none runs). An
        endpoint with inference components on it is refused, as SageMaker refuses it, unless
        ``with_components`` (the site deleting an idle endpoint): they are deleted first."""
        arn = self.repository.get(name).arn
        components = self.components.on_endpoint(name)
        if with_components:
            for component in components:
                self.components.delete(component)
        elif components:
            raise ValidationError(
                f"Endpoint {name!r} has inference components: {', '.join(components)}. Delete them "
                "first (DeleteInferenceComponent), then the endpoint",
                field="EndpointName",
                value=name,
            )
        self.reconciler.delete(name)
        self._claims.forget(arn)

    def _change(self, name: str, rule: Callable[[EndpointState], EndpointState]) -> Resource:
        """Apply an API call's transition to the endpoint's record, and have the reconciler act."""

        def change(endpoint: Resource) -> Resource:
            state = rule(EndpointState.from_record(endpoint.status, endpoint.state))
            return dataclasses.replace(
                endpoint,
                status=state.status.value,
                state={**endpoint.state, **state.to_record()},
                last_modified=self._clock.now(),
            )

        endpoint = self.repository.modify(name, change)
        self.reconciler.wake()
        return endpoint

    # -- the model servers -----------------------------------------------------------------------------
    def start(self) -> None:
        """Bring up every endpoint the store says should serve (after a server start), and watch."""
        self.reconciler.start()

    def tick(self) -> bool:
        """One pass of the reconciler (tests drive it pass by pass)."""
        return self.reconciler.tick()

    def close(self) -> None:
        self.components.close()
        self.reconciler.close()


__all__ = [
    "EndpointConfigService",
    "EndpointReconciler",
    "EndpointService",
    "InferenceComponentService",
    "LiveVariant",
    "ModelService",
    "NoRoute",
    "Router",
]
