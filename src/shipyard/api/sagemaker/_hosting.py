"""Models, endpoint configs and endpoints: Create/Describe/List/Delete of each."""

from __future__ import annotations

import contextlib
from typing import Any

from shipyard.api._context import RequestContext
from shipyard.api.sagemaker._ownership import visible
from shipyard.core.serverless import ServerlessConfig
from shipyard.core.tags import Tag
from shipyard.errors import NotFoundError
from shipyard.services import describe as answers
from shipyard.store import Resource


def _tag(ctx: RequestContext, resource: Resource, params: dict[str, Any]) -> None:
    if params.get("Tags"):
        ctx.platform.tagging.add_tags(resource.arn, [Tag.from_wire(t) for t in params["Tags"]])


# -- models -------------------------------------------------------------------------------------
def create_model(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    model = ctx.platform.models.create(params, region=ctx.region, owner=ctx.owner)
    _tag(ctx, model, params)
    return {"ModelArn": model.arn}


def describe_model(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    model, _ = ctx.platform.models.get(params["ModelName"])
    return answers.model(model)


def list_models(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    models, token = ctx.platform.models.find(params)
    models = visible(ctx, models, lambda m: m.arn, "sagemaker:DescribeModel")
    return {
        "Models": [{"ModelName": m.name, "ModelArn": m.arn, "CreationTime": m.created} for m in models],
        "NextToken": token,
    }


def delete_model(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.models.delete(params["ModelName"])
    return {}


# -- endpoint configs ---------------------------------------------------------------------------
def create_endpoint_config(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    config = ctx.platform.endpoint_configs.create(params, region=ctx.region, owner=ctx.owner)
    _tag(ctx, config, params)
    return {"EndpointConfigArn": config.arn}


def describe_endpoint_config(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    config, _ = ctx.platform.endpoint_configs.get(params["EndpointConfigName"])
    return {
        "EndpointConfigName": config.name,
        "EndpointConfigArn": config.arn,
        "ProductionVariants": config.request["ProductionVariants"],
        "KmsKeyId": config.request.get("KmsKeyId"),
        "AsyncInferenceConfig": config.request.get("AsyncInferenceConfig"),
        "ExecutionRoleArn": config.request.get("ExecutionRoleArn"),  # an endpoint for inference components
        "CreationTime": config.created,
    }


def list_endpoint_configs(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    configs, token = ctx.platform.endpoint_configs.find(params)
    configs = visible(ctx, configs, lambda c: c.arn, "sagemaker:DescribeEndpointConfig")
    return {
        "EndpointConfigs": [
            {"EndpointConfigName": c.name, "EndpointConfigArn": c.arn, "CreationTime": c.created}
            for c in configs
        ],
        "NextToken": token,
    }


def delete_endpoint_config(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.endpoint_configs.delete(params["EndpointConfigName"])
    return {}


# -- endpoints ----------------------------------------------------------------------------------
def create_endpoint(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    endpoint = ctx.platform.endpoints.create(
        params, region=ctx.region, owner=ctx.owner
    )  # budgets asked there
    _tag(ctx, endpoint, params)
    return {"EndpointArn": endpoint.arn}


def describe_endpoint(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    endpoints = ctx.platform.endpoints
    endpoint = endpoints.get(params["EndpointName"])
    state = endpoint.state
    live = {v.name: v for v in endpoints.router.variants(endpoint.name)}
    variants = []
    for variant in state["variants"]:
        entry: dict[str, Any] = {"VariantName": variant["name"], "DesiredWeight": variant["weight"]}
        serverless = ServerlessConfig.from_record(variant.get("serverless"))
        if serverless is not None:  # no instances: its memory and concurrency instead
            entry["DesiredServerlessConfig"] = serverless.to_wire()
        else:
            entry["DesiredInstanceCount"] = variant["instance_count"]
        serving = live.get(variant["name"])
        if serving is not None:
            with contextlib.suppress(NotFoundError):  # a model deleted after deployment keeps serving
                model, spec = ctx.platform.models.get(variant["model"])
                image = spec.container.image
                entry["DeployedImages"] = [
                    {"SpecifiedImage": image, "ResolvedImage": image, "ResolutionTime": model.created}
                ]
            entry["CurrentWeight"] = serving.weight
            if serving.serverless is not None:
                entry["CurrentServerlessConfig"] = serving.serverless.config.to_wire()
            else:
                entry["CurrentInstanceCount"] = endpoints.live_count(endpoint.name, variant["name"])
        variants.append(entry)
    asynchronous = None
    with contextlib.suppress(NotFoundError):  # a config deleted under its endpoint: SageMaker allows it
        asynchronous = ctx.platform.endpoint_configs.get(state["config"])[0].request.get(
            "AsyncInferenceConfig"
        )
    return {
        "EndpointName": endpoint.name,
        "EndpointArn": endpoint.arn,
        "EndpointConfigName": state["config"],
        "ProductionVariants": variants,
        "EndpointStatus": _shown(endpoint.status, endpoint.name in endpoints.components.busy_endpoints()),
        "FailureReason": state.get("failure_reason"),
        "CreationTime": endpoint.created,
        "LastModifiedTime": endpoint.last_modified,
        "AsyncInferenceConfig": asynchronous,
    }


def _shown(status: str | None, components_busy: bool) -> str | None:
    """An endpoint in service is Updating while an inference component on it is created or
    updated, as SageMaker shows it."""
    return "Updating" if status == "InService" and components_busy else status


def update_endpoint(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"EndpointArn": ctx.platform.endpoints.update(params).arn}  # budgets asked there


def update_endpoint_weights_and_capacities(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"EndpointArn": ctx.platform.endpoints.update_weights_and_capacities(params).arn}


def list_endpoints(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    endpoints, token = ctx.platform.endpoints.find(params)
    endpoints = visible(ctx, endpoints, lambda e: e.arn, "sagemaker:DescribeEndpoint")
    busy = ctx.platform.endpoints.components.busy_endpoints() if endpoints else set()
    return {
        "Endpoints": [
            {
                "EndpointName": e.name,
                "EndpointArn": e.arn,
                "CreationTime": e.created,
                "LastModifiedTime": e.last_modified,
                "EndpointStatus": _shown(e.status, e.name in busy),
            }
            for e in endpoints
        ],
        "NextToken": token,
    }


def delete_endpoint(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.endpoints.delete(params["EndpointName"])
    return {}


OPERATIONS = {
    "CreateModel": create_model,
    "DescribeModel": describe_model,
    "ListModels": list_models,
    "DeleteModel": delete_model,
    "CreateEndpointConfig": create_endpoint_config,
    "DescribeEndpointConfig": describe_endpoint_config,
    "ListEndpointConfigs": list_endpoint_configs,
    "DeleteEndpointConfig": delete_endpoint_config,
    "CreateEndpoint": create_endpoint,
    "DescribeEndpoint": describe_endpoint,
    "ListEndpoints": list_endpoints,
    "UpdateEndpoint": update_endpoint,
    "UpdateEndpointWeightsAndCapacities": update_endpoint_weights_and_capacities,
    "DeleteEndpoint": delete_endpoint,
}
