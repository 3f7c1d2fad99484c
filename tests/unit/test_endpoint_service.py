"""The endpoint service and its reconciler, pass by pass, on fake model servers: what a user of
DescribeEndpoint and InvokeEndpoint sees after each pass, and what is billed."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from shipyard.core.catalog import InstanceCatalog
from shipyard.core.pricing import Rates
from shipyard.envs import ImageResolver
from shipyard.errors import NotFoundError, ValidationError
from shipyard.services.autoscaling import AutoscalingService
from shipyard.services.costs import CostService
from shipyard.services.endpoints import EndpointConfigService, EndpointService, ModelService
from shipyard.store import Database, ResourceRepository, UsageRepository
from shipyard.testing import FakeModelServer, FakeModelServers, InlineExecutor, ManualClock

SKLEARN = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
REGION = "us-east-1"


@dataclasses.dataclass
class Hosting:
    db: Database
    clock: ManualClock
    servers: FakeModelServers
    models: ModelService
    configs: EndpointConfigService
    costs: CostService
    endpoints: EndpointService
    root: Path

    def service(self) -> EndpointService:
        """An endpoint service on the same store (as a restarted server builds it)."""
        return EndpointService(
            ResourceRepository(self.db, "endpoint", "Endpoint"),
            self.configs,
            self.models,
            lambda instance_type: self.servers,
            ImageResolver(),
            self.costs,
            endpoints_dir=self.root / "endpoints",
            account_id="000000000000",
            clock=self.clock,
            workers=InlineExecutor(),
        )

    def model(self, name: str, data: str = "s3://models/good.tar.gz") -> str:
        self.models.create(
            {"ModelName": name, "PrimaryContainer": {"Image": SKLEARN, "ModelDataUrl": data}}, region=REGION
        )
        return name

    def config(self, name: str, *variants: tuple[str, str, int, float]) -> str:
        self.configs.create(
            {
                "EndpointConfigName": name,
                "ProductionVariants": [
                    {
                        "VariantName": variant,
                        "ModelName": model,
                        "InitialInstanceCount": count,
                        "InstanceType": "ml.m5.large",
                        "InitialVariantWeight": weight,
                    }
                    for variant, model, count, weight in variants
                ],
            },
            region=REGION,
        )
        return name

    def deploy(self, name: str, *variants: tuple[str, str, int, float]) -> str:
        self.endpoints.create(
            {"EndpointName": name, "EndpointConfigName": self.config(name, *variants)}, region=REGION
        )
        return name

    def passes(self, count: int = 3) -> None:
        for _ in range(count):
            self.endpoints.tick()

    def status(self, name: str) -> tuple[str | None, str | None]:
        endpoint = self.endpoints.get(name)
        return endpoint.status, endpoint.state.get("failure_reason")

    def invoke(self, name: str, variant: str | None = None) -> tuple[str, bytes]:
        live, server = self.endpoints.router.pick(name, variant)
        assert isinstance(server, FakeModelServer)
        return live.name, server.invoke(b"[[1, 2]]")

    def billed(self, name: str) -> list[str]:
        """The usage intervals open for the endpoint (one per model server in service)."""
        return sorted(i.key for i in self.costs.usage.open_intervals("endpoint") if i.name == name)


@pytest.fixture
def hosting(tmp_path: Path) -> Iterator[Hosting]:
    db = Database(f"sqlite:///{tmp_path}/x.db")
    db.upgrade()
    catalog = InstanceCatalog.load()
    clock = ManualClock()
    resolver = ImageResolver()
    models = ModelService(ResourceRepository(db, "model", "Model"), resolver, account_id="0", clock=clock)
    configs = EndpointConfigService(
        ResourceRepository(db, "endpoint-config", "Endpoint configuration"),
        models,
        catalog,
        account_id="0",
        clock=clock,
    )
    costs = CostService(UsageRepository(db), catalog, Rates(), tags=lambda arn: {}, bucket_sizes=dict)
    servers = FakeModelServers(
        respond=lambda server, body: f"{server.request.variant}:{body.decode()}".encode()
    )
    setup = Hosting(db, clock, servers, models, configs, costs, None, tmp_path)  # type: ignore[arg-type]
    setup.endpoints = setup.service()
    yield setup
    setup.endpoints.close()
    db.dispose()


def test_a_new_endpoint_is_creating_then_in_service_and_billed_per_model_server(hosting: Hosting) -> None:
    name = hosting.deploy("ep", ("AllTraffic", hosting.model("m"), 2, 1.0))
    assert hosting.status(name) == ("Creating", None)
    with pytest.raises(NotFoundError):  # nothing to send a request to yet
        hosting.invoke(name)
    hosting.passes()
    assert hosting.status(name) == ("InService", None)
    assert hosting.invoke(name) == ("AllTraffic", b"AllTraffic:[[1, 2]]")
    assert hosting.endpoints.live_count(name, "AllTraffic") == 2
    assert len(hosting.billed(name)) == 2
    assert len(hosting.servers.running) == 2


def test_a_model_that_fails_to_load_fails_the_endpoint_with_the_reason(hosting: Hosting) -> None:
    hosting.servers.failing["s3://models/broken.tar.gz"] = "ValueError: no weights for this model"
    good, broken = hosting.model("good"), hosting.model("broken", "s3://models/broken.tar.gz")
    name = hosting.deploy("ep", ("A", good, 1, 1.0), ("B", broken, 1, 1.0))
    hosting.passes()
    status, reason = hosting.status(name)
    assert status == "Failed"
    assert reason is not None and "ValueError: no weights for this model" in reason
    assert hosting.servers.running == []  # the variant that came up is stopped too
    assert hosting.billed(name) == []
    with pytest.raises(ValidationError, match="while it is Failed"):
        hosting.endpoints.update({"EndpointName": name, "EndpointConfigName": name})


def test_a_model_server_that_dies_is_replaced_in_its_instance_while_the_other_serves(
    hosting: Hosting,
) -> None:
    name = hosting.deploy("ep", ("AllTraffic", hosting.model("m"), 2, 1.0))
    hosting.passes()
    billed = hosting.billed(name)
    victim, survivor = hosting.servers.running
    victim.die()
    for _ in range(10):  # every request reaches the one alive
        assert hosting.invoke(name) == ("AllTraffic", b"AllTraffic:[[1, 2]]")
    assert hosting.endpoints.live_count(name, "AllTraffic") == 1
    hosting.passes()
    assert hosting.endpoints.live_count(name, "AllTraffic") == 2
    replacement = hosting.servers.started[-1]
    assert replacement.instance_dir == victim.instance_dir and replacement is not victim
    assert set(hosting.servers.running) == {survivor, replacement}
    assert hosting.billed(name) == billed  # the same instances, billed on
    assert hosting.status(name) == ("InService", None)


def test_an_update_moves_traffic_at_once_and_retires_the_old_servers_when_answered(hosting: Hosting) -> None:
    name = hosting.deploy("ep", ("Old", hosting.model("first"), 1, 1.0))
    hosting.passes()
    [old] = hosting.servers.running
    old_billing = hosting.billed(name)
    second = hosting.config("second", ("New", hosting.model("next"), 2, 1.0))
    hosting.endpoints.update({"EndpointName": name, "EndpointConfigName": second})
    assert hosting.status(name) == ("Updating", None)
    with pytest.raises(ValidationError, match="while it is Updating"):
        hosting.endpoints.update({"EndpointName": name, "EndpointConfigName": second})
    old.in_flight = 1  # a request under way when traffic moves
    hosting.endpoints.tick()  # the new config's servers start beside the old one
    assert hosting.invoke(name)[0] == "Old"
    hosting.endpoints.tick()  # all healthy: traffic moves
    assert hosting.status(name) == ("InService", None)
    assert hosting.endpoints.get(name).state["config"] == "second"
    assert {hosting.invoke(name)[0] for _ in range(10)} == {"New"}
    assert old.alive  # still answering its request
    old.in_flight = 0
    hosting.endpoints.tick()
    assert not old.alive and old in hosting.servers.stopped
    assert len(hosting.servers.running) == 2
    billed = hosting.billed(name)
    assert len(billed) == 2 and not set(billed) & set(old_billing)


def test_a_retiring_server_is_stopped_after_the_drain_time_even_if_a_request_hangs(hosting: Hosting) -> None:
    name = hosting.deploy("ep", ("Old", hosting.model("first"), 1, 1.0))
    hosting.passes()
    [old] = hosting.servers.running
    hosting.endpoints.update(
        {
            "EndpointName": name,
            "EndpointConfigName": hosting.config("second", ("New", hosting.model("n"), 1, 1.0)),
        }
    )
    old.in_flight = 1
    hosting.passes()
    assert old.alive
    hosting.clock.advance(31)  # past drain_seconds (30)
    hosting.endpoints.tick()
    assert not old.alive


def test_an_update_that_fails_keeps_the_previous_config_serving(hosting: Hosting) -> None:
    name = hosting.deploy("ep", ("Old", hosting.model("first"), 1, 1.0))
    hosting.passes()
    hosting.servers.failing["s3://models/broken.tar.gz"] = "ValueError: bad pickle"
    broken = hosting.config("broken", ("New", hosting.model("broken", "s3://models/broken.tar.gz"), 1, 1.0))
    hosting.endpoints.update({"EndpointName": name, "EndpointConfigName": broken})
    hosting.passes()
    status, reason = hosting.status(name)
    assert status == "InService"
    assert reason is not None and reason.startswith("Updating failed, kept the previous config: ")
    assert "ValueError: bad pickle" in reason
    assert hosting.endpoints.get(name).state["config"] == name
    assert hosting.invoke(name)[0] == "Old"
    assert len(hosting.servers.running) == 1


def test_weights_apply_at_once_and_counts_after_the_passes(hosting: Hosting) -> None:
    model = hosting.model("m")
    name = hosting.deploy("ep", ("Blue", model, 1, 1.0), ("Green", model, 1, 1.0))
    hosting.passes()
    hosting.endpoints.update_weights_and_capacities(
        {
            "EndpointName": name,
            "DesiredWeightsAndCapacities": [
                {"VariantName": "Blue", "DesiredWeight": 0.0},
                {"VariantName": "Green", "DesiredInstanceCount": 3},
            ],
        }
    )
    assert {hosting.invoke(name)[0] for _ in range(20)} == {"Green"}  # before any pass
    assert hosting.status(name) == ("Updating", None)
    hosting.passes()
    assert hosting.status(name) == ("InService", None)
    assert hosting.endpoints.live_count(name, "Green") == 3
    assert len(hosting.billed(name)) == 4
    hosting.endpoints.update_weights_and_capacities(
        {
            "EndpointName": name,
            "DesiredWeightsAndCapacities": [{"VariantName": "Green", "DesiredInstanceCount": 1}],
        }
    )
    hosting.passes()
    assert (hosting.endpoints.live_count(name, "Blue"), hosting.endpoints.live_count(name, "Green")) == (1, 1)
    assert len(hosting.servers.running) == 2 and len(hosting.billed(name)) == 2
    with pytest.raises(ValidationError, match="'Red' is not a production variant"):
        hosting.endpoints.update_weights_and_capacities(
            {
                "EndpointName": name,
                "DesiredWeightsAndCapacities": [{"VariantName": "Red", "DesiredWeight": 1.0}],
            }
        )


def test_delete_stops_the_servers_closes_the_bills_and_forgets_the_endpoint(hosting: Hosting) -> None:
    name = hosting.deploy("ep", ("AllTraffic", hosting.model("m"), 2, 1.0))
    hosting.passes()
    hosting.endpoints.delete(name)
    assert hosting.servers.running == []  # when delete returns
    assert hosting.billed(name) == []
    with pytest.raises(NotFoundError):
        hosting.endpoints.get(name)
    with pytest.raises(NotFoundError):
        hosting.invoke(name)
    assert not (hosting.root / "endpoints" / name).exists()
    hosting.passes()  # nothing comes back
    assert hosting.servers.running == []


def test_a_delete_while_creating_leaves_nothing_running(hosting: Hosting) -> None:
    name = hosting.deploy("ep", ("AllTraffic", hosting.model("m"), 1, 1.0))
    hosting.endpoints.tick()  # its model server is started, not yet in service
    hosting.endpoints.delete(name)
    hosting.passes()
    assert hosting.servers.running == [] and hosting.billed(name) == []


def test_a_restarted_server_brings_its_endpoints_up_again(hosting: Hosting) -> None:
    name = hosting.deploy("ep", ("AllTraffic", hosting.model("m"), 1, 1.0))
    hosting.passes()
    hosting.endpoints.close()  # the server stops: its model servers end with it
    assert hosting.servers.running == [] and hosting.billed(name) == []
    restarted = hosting.service()
    assert restarted.get(name).status == "InService"
    assert restarted.live_count(name, "AllTraffic") == 0
    for _ in range(3):
        restarted.tick()
    assert restarted.live_count(name, "AllTraffic") == 1
    assert len(hosting.billed(name)) == 1
    hosting.endpoints = restarted


def test_autoscaling_scales_out_under_load_and_in_after_the_cooldown(hosting: Hosting) -> None:
    from shipyard.core.clock import SystemClock

    name = hosting.deploy("ep", ("AllTraffic", hosting.model("m"), 1, 1.0))
    hosting.passes()
    clock = ManualClock(SystemClock().now())  # the metrics are kept by the wall clock
    scaler = AutoscalingService(hosting.endpoints, account_id="0", window=60.0, clock=clock)
    resource = {"ServiceNamespace": "sagemaker", "ResourceId": f"endpoint/{name}/variant/AllTraffic"}
    scaler.register({**resource, "MinCapacity": 1, "MaxCapacity": 3}, region=REGION)
    policy: dict[str, Any] = {
        "TargetValue": 10.0,
        "PredefinedMetricSpecification": {"PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"},
        "ScaleOutCooldown": 0,
        "ScaleInCooldown": 120,
    }
    scaler.put_policy(
        {
            **resource,
            "PolicyName": "p",
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": policy,
        },
        region=REGION,
    )
    for _ in range(25):  # 25 a minute against a target of 10 per instance: 3 instances
        hosting.endpoints.metrics.record(name, "AllTraffic", status=200, model_us=1.0, overhead_us=1.0)
    scaler.evaluate()
    hosting.passes()
    assert hosting.endpoints.live_count(name, "AllTraffic") == 3
    [activity] = scaler.activities({"ServiceNamespace": "sagemaker"})
    assert activity["Description"] == "Setting desired instance count to 3."
    hosting.endpoints.metrics = type(hosting.endpoints.metrics)()  # no more load
    scaler.evaluate()  # within the scale-in cooldown: nothing
    hosting.passes()
    assert hosting.endpoints.live_count(name, "AllTraffic") == 3
    clock.advance(121)
    scaler.evaluate()
    hosting.passes()
    assert hosting.endpoints.live_count(name, "AllTraffic") == 1
