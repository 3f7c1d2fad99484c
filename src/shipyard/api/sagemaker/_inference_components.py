"""Inference components: Create/Describe/List/Update/UpdateRuntimeConfig/Delete."""

from __future__ import annotations

from collections import Counter
from typing import Any

from shipyard.api._context import RequestContext
from shipyard.api.sagemaker._ownership import visible
from shipyard.core.tags import Tag


def create_inference_component(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    components = ctx.platform.endpoints.components
    component = components.create(params, region=ctx.region, owner=ctx.owner)
    if params.get("Tags"):
        ctx.platform.tagging.add_tags(component.arn, [Tag.from_wire(t) for t in params["Tags"]])
    return {"InferenceComponentArn": component.arn}


def describe_inference_component(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    components = ctx.platform.endpoints.components
    component = components.get(params["InferenceComponentName"])
    state = component.state
    specification = dict(state["specification"])
    container = specification.pop("Container", None)
    if container:
        image = container.get("Image")
        summary: dict[str, Any] = {
            "DeployedImage": {
                "SpecifiedImage": image,
                "ResolvedImage": image,
                "ResolutionTime": component.created,
            }
        }
        for key in ("ArtifactUrl", "Environment"):
            if container.get(key) is not None:
                summary[key] = container[key]
        specification["Container"] = summary
    copies = components.current(component.name)
    runtime: dict[str, Any] = {"DesiredCopyCount": state["copies"], "CurrentCopyCount": len(copies)}
    if copies:
        runtime["PlacementStatus"] = [
            {"InstanceType": kind, "CurrentCopyCount": count}
            for kind, count in sorted(Counter(kind for kind, _ in copies).items())
        ]
    return {
        "InferenceComponentName": component.name,
        "InferenceComponentArn": component.arn,
        "EndpointName": state["endpoint"],
        "EndpointArn": state["endpoint_arn"],
        "VariantName": state["variant"],
        "FailureReason": state.get("failure_reason"),
        "Specification": specification,
        "RuntimeConfig": runtime,
        "CreationTime": component.created,
        "LastModifiedTime": component.last_modified,
        "InferenceComponentStatus": component.status,
    }


def list_inference_components(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    found, token = ctx.platform.endpoints.components.find(params)
    found = visible(ctx, found, lambda c: c.arn, "sagemaker:DescribeInferenceComponent")
    return {
        "InferenceComponents": [
            {
                "InferenceComponentName": c.name,
                "InferenceComponentArn": c.arn,
                "EndpointName": c.state["endpoint"],
                "EndpointArn": c.state["endpoint_arn"],
                "VariantName": c.state["variant"],
                "InferenceComponentStatus": c.status,
                "CreationTime": c.created,
                "LastModifiedTime": c.last_modified,
            }
            for c in found
        ],
        "NextToken": token,
    }


def update_inference_component(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"InferenceComponentArn": ctx.platform.endpoints.components.update(params).arn}


def update_inference_component_runtime_config(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"InferenceComponentArn": ctx.platform.endpoints.components.update_runtime_config(params).arn}


def delete_inference_component(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    components = ctx.platform.endpoints.components
    arn = components.get(params["InferenceComponentName"]).arn
    components.delete(params["InferenceComponentName"])
    ctx.platform.tagging.clear(arn)
    return {}


OPERATIONS = {
    "CreateInferenceComponent": create_inference_component,
    "DescribeInferenceComponent": describe_inference_component,
    "ListInferenceComponents": list_inference_components,
    "UpdateInferenceComponent": update_inference_component,
    "UpdateInferenceComponentRuntimeConfig": update_inference_component_runtime_config,
    "DeleteInferenceComponent": delete_inference_component,
}
