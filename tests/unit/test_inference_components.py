"""Inference components: where copies are placed, which copy answers, a component's status life,
and the service pass by pass on fake model servers (what DescribeInferenceComponent and
InvokeEndpoint would show after each pass, and what is billed)."""

from __future__ import annotations

from typing import Any

import pytest

from shipyard.core.hosting import EndpointConfigSpec
from shipyard.core.inference_components import (
    Capacity,
    ComponentSpec,
    ComponentState,
    ComponentStatus,
    InsufficientCapacity,
    Need,
    choose_copy,
    place,
)
from shipyard.errors import ValidationError
from shipyard.services._router import COMPONENT_REQUIRED
from shipyard.testing import FakeModelServer
from tests.unit import test_endpoint_service
from tests.unit.test_endpoint_service import REGION, SKLEARN, Hosting

hosting = test_endpoint_service.hosting  # the same fixture: a store, fake model servers, a manual clock

ROLE = "arn:aws:iam::000000000000:role/SageMakerRole"
LARGE = [Capacity("i-a", 2.0, 8192), Capacity("i-b", 2.0, 8192)]  # two ml.m5.large


# -- placement -----------------------------------------------------------------------------------
def test_copies_spread_over_the_instances_then_fill_them() -> None:
    need = Need(cpus=1.0, memory_mb=1024)
    assert place(LARGE, {}, need, 4) == ["i-a", "i-b", "i-a", "i-b"]


def test_binpack_fills_one_instance_before_the_next() -> None:
    need = Need(cpus=0.5, memory_mb=1024)
    assert place(LARGE, {}, need, 3, strategy="BINPACK") == ["i-a", "i-a", "i-a"]


def test_what_other_components_reserve_is_counted() -> None:
    used = {"i-a": Need(cpus=2.0, memory_mb=1024)}  # another component holds i-a's cores
    assert place(LARGE, used, Need(cpus=1.0, memory_mb=512), 2) == ["i-b", "i-b"]


def test_copies_that_do_not_fit_are_refused_all_or_none_saying_what_is_free() -> None:
    with pytest.raises(InsufficientCapacity) as refused:
        place(LARGE, {}, Need(cpus=1.5, memory_mb=1024), 3, component="big")
    message = refused.value.message
    assert message.startswith("CapacityError")  # what the sagemaker SDK turns into CapacityError
    assert "copy 3 of 3 of inference component 'big'" in message
    assert "1.5 CPU cores" in message and "i-a has 0.5 CPU cores and 7168 MB free" in message


def test_memory_and_accelerators_bound_placement_too() -> None:
    with pytest.raises(InsufficientCapacity):
        place(LARGE, {}, Need(cpus=0.25, memory_mb=9000), 1)
    with pytest.raises(InsufficientCapacity, match="accelerators"):
        place(LARGE, {}, Need(cpus=0.25, accelerators=1, memory_mb=128), 1)
    gpu = [Capacity("i-g", 4.0, 16384, accelerators=1)]
    assert place(gpu, {}, Need(accelerators=1, memory_mb=128), 1) == ["i-g"]


# -- routing --------------------------------------------------------------------------------------
def test_least_outstanding_takes_the_idlest_copy_and_rotates_among_equals() -> None:
    assert choose_copy([3, 0, 2], 0) == 1
    assert [choose_copy([0, 0, 0], turn) for turn in range(4)] == [0, 1, 2, 0]
    assert choose_copy([1, 0, 0], 1) == 1 and choose_copy([1, 0, 0], 2) == 2


def test_random_uses_the_callers_draw() -> None:
    assert choose_copy([5, 0], 0, "RANDOM") == 0


# -- requests ------------------------------------------------------------------------------------
def test_a_specification_names_a_model_or_a_container_and_what_a_copy_needs() -> None:
    spec = ComponentSpec.from_request(
        {
            "Container": {"Image": SKLEARN, "ArtifactUrl": "s3://m/a.tar.gz"},
            "ComputeResourceRequirements": {"NumberOfCpuCoresRequired": 0.5, "MinMemoryRequiredInMb": 256},
        }
    )
    assert spec.container is not None and spec.container.model_data_url == "s3://m/a.tar.gz"
    assert spec.need == Need(0.5, 0.0, 256, None)
    with pytest.raises(ValidationError, match="either ModelName or Container"):
        ComponentSpec.from_request({"ComputeResourceRequirements": {"MinMemoryRequiredInMb": 256}})
    with pytest.raises(ValidationError, match="not both"):
        ComponentSpec.from_request(
            {"ModelName": "m", "Container": {"Image": SKLEARN}, "ComputeResourceRequirements": {}}
        )
    with pytest.raises(ValidationError, match="ComputeResourceRequirements is required"):
        ComponentSpec.from_request({"ModelName": "m"})
    with pytest.raises(ValidationError, match=r"MaxMemoryRequiredInMb \(128\) must not be less"):
        ComponentSpec.from_request(
            {
                "ModelName": "m",
                "ComputeResourceRequirements": {"MinMemoryRequiredInMb": 256, "MaxMemoryRequiredInMb": 128},
            }
        )


def _variant(**extra: Any) -> dict[str, Any]:
    return {"VariantName": "AllTraffic", "InstanceType": "ml.m5.large", "InitialInstanceCount": 1, **extra}


def test_an_endpoint_config_without_models_is_for_components_and_needs_a_role() -> None:
    spec = EndpointConfigSpec.from_request(
        {"EndpointConfigName": "c", "ExecutionRoleArn": ROLE, "ProductionVariants": [_variant()]}
    )
    assert spec.for_components and spec.variants[0].model == ""
    with pytest.raises(ValidationError, match="ExecutionRoleArn is required"):
        EndpointConfigSpec.from_request({"EndpointConfigName": "c", "ProductionVariants": [_variant()]})


def test_an_endpoint_config_mixing_variants_with_and_without_models_is_refused() -> None:
    with pytest.raises(ValidationError, match=r"ProductionVariants.1.ModelName is required: either every"):
        EndpointConfigSpec.from_request(
            {
                "EndpointConfigName": "c",
                "ExecutionRoleArn": ROLE,
                "ProductionVariants": [_variant(ModelName="m"), _variant(VariantName="B")],
            }
        )


# -- status transitions ----------------------------------------------------------------------------
SPEC = {"ModelName": "a", "ComputeResourceRequirements": {"MinMemoryRequiredInMb": 256}}


def test_a_component_is_creating_then_in_service_and_updates_only_from_there() -> None:
    state = ComponentState.new(SPEC, 2)
    assert state.status == ComponentStatus.CREATING
    with pytest.raises(ValidationError, match="while it is Creating"):
        state.update("c", None, 3)
    state = state.served()
    assert state.status == ComponentStatus.IN_SERVICE
    scaled = state.update("c", None, 3)
    assert (scaled.status, scaled.copies, scaled.version) == (ComponentStatus.UPDATING, 3, 1)
    assert scaled.served().status == ComponentStatus.IN_SERVICE


def test_a_creation_that_cannot_start_fails_and_a_failed_update_keeps_what_served() -> None:
    assert ComponentState.new(SPEC, 1).start_failed("boom", running=0).status == ComponentStatus.FAILED
    serving = ComponentState.new(SPEC, 1).served()
    changed = serving.update("c", {**SPEC, "ModelName": "b"}, None)
    assert changed.version == 2 and changed.previous is not None
    kept = changed.start_failed("no weights", running=0)
    assert (kept.status, kept.specification, kept.version) == (ComponentStatus.IN_SERVICE, SPEC, 1)
    assert kept.failure_reason == "Updating failed, kept the previous specification: no weights"
    more = serving.update("c", None, 5).start_failed("CapacityError: ...", running=2)
    assert (more.status, more.copies) == (ComponentStatus.IN_SERVICE, 2)
    assert more.failure_reason is not None and more.failure_reason.startswith("Scaling to more copies failed")


# -- the service, pass by pass --------------------------------------------------------------------
def _capacity_endpoint(hosting: Hosting, name: str = "ep", count: int = 1) -> str:
    hosting.configs.create(
        {
            "EndpointConfigName": name,
            "ExecutionRoleArn": ROLE,
            "ProductionVariants": [
                _variant(
                    InitialInstanceCount=count,
                    RoutingConfig={"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"},
                )
            ],
        },
        region=REGION,
    )
    hosting.endpoints.create({"EndpointName": name, "EndpointConfigName": name}, region=REGION)
    hosting.passes()
    return name


def _component(hosting: Hosting, name: str, model: str, copies: int, cpus: float = 0.5) -> None:
    hosting.endpoints.components.create(
        {
            "InferenceComponentName": name,
            "EndpointName": "ep",
            "VariantName": "AllTraffic",
            "Specification": {
                "ModelName": model,
                "ComputeResourceRequirements": {
                    "NumberOfCpuCoresRequired": cpus,
                    "MinMemoryRequiredInMb": 512,
                },
            },
            "RuntimeConfig": {"CopyCount": copies},
        },
        region=REGION,
    )


def _invoke(hosting: Hosting, component: str) -> bytes:
    _, server = hosting.endpoints.components.pick("ep", component)
    assert isinstance(server, FakeModelServer)
    return server.invoke(b"x")


def test_an_endpoint_for_components_is_in_service_billed_per_instance_with_no_model_server(
    hosting: Hosting,
) -> None:
    name = _capacity_endpoint(hosting, count=2)
    assert hosting.status(name) == ("InService", None)
    assert hosting.servers.running == []
    assert len(hosting.billed(name)) == 2  # the instances, as SageMaker bills them
    with pytest.raises(ValidationError) as refused:
        hosting.endpoints.router.pick(name)
    assert refused.value.message == COMPONENT_REQUIRED


def test_two_components_each_answer_with_their_own_model_and_scale(hosting: Hosting) -> None:
    hosting.servers.respond = lambda server, body: (server.request.container.model_data_url or "").encode()
    _capacity_endpoint(hosting)
    hosting.model("a", "s3://models/a.tar.gz")
    hosting.model("b", "s3://models/b.tar.gz")
    _component(hosting, "ic-a", "a", 2)
    _component(hosting, "ic-b", "b", 1)
    components = hosting.endpoints.components
    assert components.get("ic-a").status == "Creating"
    hosting.passes()
    assert components.get("ic-a").status == "InService" and components.get("ic-b").status == "InService"
    assert _invoke(hosting, "ic-a") == b"s3://models/a.tar.gz"
    assert _invoke(hosting, "ic-b") == b"s3://models/b.tar.gz"
    assert len(hosting.servers.running) == 3
    assert len(hosting.billed("ep")) == 1  # components add nothing to the bill
    copies = {id(components.pick("ep", "ic-a")[1]) for _ in range(4)}
    assert len(copies) == 2  # idle copies take requests in turn

    components.update_runtime_config(
        {"InferenceComponentName": "ic-a", "DesiredRuntimeConfig": {"CopyCount": 1}}
    )
    assert components.get("ic-a").status == "Updating"
    hosting.passes()
    assert components.get("ic-a").status == "InService"
    assert len(components.current("ic-a")) == 1 and len(hosting.servers.running) == 2

    components.delete("ic-b")
    assert len(hosting.servers.running) == 1
    with pytest.raises(ValidationError, match="Inference component ic-b of account 000000000000 not found"):
        components.pick("ep", "ic-b")


def test_copies_past_the_instances_capacity_fail_the_creation_with_a_capacity_error(hosting: Hosting) -> None:
    _capacity_endpoint(hosting)  # one ml.m5.large: 2 vCPUs
    _component(hosting, "big", hosting.model("a"), 3, cpus=1.0)
    hosting.passes()
    component = hosting.endpoints.components.get("big")
    assert component.status == "Failed"
    assert component.state["failure_reason"].startswith("CapacityError")
    assert hosting.servers.running == []


def test_a_copy_that_dies_is_started_again(hosting: Hosting) -> None:
    _capacity_endpoint(hosting)
    _component(hosting, "ic", hosting.model("a"), 1)
    hosting.passes()
    first = hosting.servers.running[0]
    first.die()
    hosting.passes()
    assert len(hosting.servers.running) == 1 and hosting.servers.running[0] is not first


def test_an_endpoint_with_components_cannot_be_deleted_until_they_are(hosting: Hosting) -> None:
    _capacity_endpoint(hosting)
    _component(hosting, "ic", hosting.model("a"), 1)
    hosting.passes()
    with pytest.raises(ValidationError, match=r"has inference components: ic\. Delete them first"):
        hosting.endpoints.delete("ep")
    hosting.endpoints.components.delete("ic")
    hosting.endpoints.delete("ep")
    assert hosting.billed("ep") == []


def test_the_site_deleting_an_idle_endpoint_deletes_its_components_first(hosting: Hosting) -> None:
    _capacity_endpoint(hosting)
    _component(hosting, "ic", hosting.model("a"), 1)
    hosting.passes()
    hosting.endpoints.delete("ep", with_components=True)  # what the waste pass does
    assert hosting.endpoints.components.on_endpoint("ep") == []
    assert hosting.servers.running == [] and hosting.billed("ep") == []


def test_a_restarted_server_brings_the_copies_back(hosting: Hosting) -> None:
    _capacity_endpoint(hosting)
    _component(hosting, "ic", hosting.model("a"), 2)
    hosting.passes()
    hosting.endpoints.close()
    assert hosting.servers.running == []
    hosting.endpoints = hosting.service()
    hosting.passes(5)
    assert hosting.endpoints.components.get("ic").status == "InService"
    assert len(hosting.endpoints.components.current("ic")) == 2


def test_copies_on_an_instance_the_endpoint_gives_up_move_to_another(hosting: Hosting) -> None:
    _capacity_endpoint(hosting, count=2)
    _component(hosting, "ic", hosting.model("a"), 2)
    hosting.passes()
    assert len({instance for _, instance in hosting.endpoints.components.current("ic")}) == 2  # spread
    hosting.endpoints.update_weights_and_capacities(
        {
            "EndpointName": "ep",
            "DesiredWeightsAndCapacities": [{"VariantName": "AllTraffic", "DesiredInstanceCount": 1}],
        }
    )
    hosting.passes(5)
    placed = hosting.endpoints.components.current("ic")
    assert len(placed) == 2 and len({instance for _, instance in placed}) == 1
    assert len(hosting.servers.running) == 2 and len(hosting.billed("ep")) == 1


# -- who may ----------------------------------------------------------------------------------------
def test_invoking_a_component_needs_it_and_its_endpoint_and_creating_one_reaches_both() -> None:
    import json

    from shipyard.api._access import request_actions
    from shipyard.api._ownership import reach_needed

    def arn(kind: str, name: str) -> str:
        return f"arn:aws:sagemaker:{REGION}:000000000000:{kind}/{name}"

    where = {"region": REGION, "account": "000000000000"}
    needed = request_actions(
        "runtime",
        method="POST",
        path="/endpoints/ep/invocations",
        query={},
        headers={"x-amzn-sagemaker-inference-component": "ic"},
        **where,
    )
    reach = reach_needed(needed, protocol="runtime", target="", params={}, **where)
    assert [(r.action, r.arn) for r in reach] == [
        ("sagemaker:InvokeEndpoint", arn("endpoint", "ep")),
        ("sagemaker:InvokeEndpoint", arn("inference-component", "ic")),
    ]
    params = {"InferenceComponentName": "ic", "EndpointName": "ep", "Specification": {"ModelName": "m"}}
    target = "SageMaker.CreateInferenceComponent"
    needed = request_actions(
        "json",
        method="POST",
        path="/",
        query={},
        headers={},
        target=target,
        body=json.dumps(params).encode(),
        **where,
    )
    assert [n.resource for n in needed] == [arn("inference-component", "ic")]
    reach = reach_needed(needed, protocol="json", target=target, params=params, **where)
    assert [r.arn for r in reach] == [arn("endpoint", "ep"), arn("model", "m")]  # not its own name: a create


# -- autoscaling of copies -------------------------------------------------------------------------
POLICY = {"config": {"TargetValue": 60.0, "ScaleOutCooldown": 0, "ScaleInCooldown": 0}}


def test_copies_follow_invocations_per_copy_within_the_bounds() -> None:
    from shipyard.core.inference_components import desired_copies

    target = {"min": 1, "max": 4, "policies": {"p": POLICY}}
    assert desired_copies(1, 180, 60.0, target, now=1000)[0] == 3  # 180 a minute on one copy, 60 wanted
    assert desired_copies(2, 600, 60.0, target, now=1000)[0] == 4  # capped at MaxCapacity
    assert desired_copies(3, 0, 60.0, target, now=1000)[0] == 1  # idle: back to MinCapacity
    assert desired_copies(2, 120, 60.0, target, now=1000) == (2, "")  # on target
    to_zero = {"min": 0, "max": 2, "policies": {"p": POLICY}}
    assert desired_copies(1, 0, 60.0, to_zero, now=1000)[0] == 0
    assert desired_copies(0, 0, 60.0, to_zero, now=1000) == (0, "")
    assert desired_copies(0, 5, 60.0, to_zero, now=1000)[0] == 1  # a request at zero copies wakes one
    cooling = {**target, "last_scaled": 990, "policies": {"p": {"config": {"TargetValue": 60.0}}}}
    assert desired_copies(1, 180, 60.0, cooling, now=1000)[0] == 1  # 300 s ScaleOutCooldown by default


def test_the_autoscaler_scales_a_components_copies_and_records_the_activity(hosting: Hosting) -> None:
    from shipyard.services.autoscaling import AutoscalingService

    _capacity_endpoint(hosting)
    _component(hosting, "ic", hosting.model("a"), 1)
    hosting.passes()
    scaling = AutoscalingService(
        hosting.endpoints, account_id="000000000000", window=60.0, clock=hosting.clock
    )
    resource = {
        "ServiceNamespace": "sagemaker",
        "ResourceId": "inference-component/ic",
        "ScalableDimension": "sagemaker:inference-component:DesiredCopyCount",
    }
    scaling.register({**resource, "MinCapacity": 1, "MaxCapacity": 3}, region=REGION)
    scaling.put_policy(
        {
            **resource,
            "PolicyName": "per-copy",
            "PolicyType": "TargetTrackingScaling",
            "TargetTrackingScalingPolicyConfiguration": {
                "TargetValue": 2.0,
                "PredefinedMetricSpecification": {
                    "PredefinedMetricType": "SageMakerInferenceComponentInvocationsPerCopy"
                },
                "ScaleOutCooldown": 0,
                "ScaleInCooldown": 0,
            },
        },
        region=REGION,
    )
    assert [t["ResourceId"] for t in scaling.targets({"ServiceNamespace": "sagemaker"})] == [
        "inference-component/ic"
    ]
    for _ in range(5):
        _invoke(hosting, "ic")
    scaling.evaluate()
    assert hosting.endpoints.components.get("ic").state["copies"] == 3
    hosting.passes()
    assert len(hosting.endpoints.components.current("ic")) == 3
    [activity] = scaling.activities({"ServiceNamespace": "sagemaker", "ResourceId": "inference-component/ic"})
    assert activity["Description"] == "Setting desired copy count to 3."
    with pytest.raises(ValidationError, match="SageMakerInferenceComponentInvocationsPerCopy"):
        scaling.put_policy(
            {
                **resource,
                "PolicyName": "wrong",
                "PolicyType": "TargetTrackingScaling",
                "TargetTrackingScalingPolicyConfiguration": {
                    "TargetValue": 2.0,
                    "PredefinedMetricSpecification": {
                        "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
                    },
                },
            },
            region=REGION,
        )
