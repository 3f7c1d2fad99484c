"""Application Auto Scaling (AWS JSON 1.1, ``X-Amz-Target: AnyScaleFrontendService.<Operation>``):
scalable targets and target-tracking policies for SageMaker endpoint variants."""

from __future__ import annotations

from typing import Any

from shipyard import errors
from shipyard.api._context import RequestContext
from shipyard.api._json import ErrorTypes, JsonApi, Operation
from shipyard.core.pagination import Page
from shipyard.schema import ServiceSchema

AUTOSCALING_ERRORS: ErrorTypes = [
    (errors.ValidationError, "ValidationException", 400),
    (errors.NotFoundError, "ObjectNotFoundException", 400),
    (errors.NotImplementedOperation, "NotImplementedException", 400),
]


def _page(items: list[dict[str, Any]], params: dict[str, Any], key: str) -> dict[str, Any]:
    found, token = Page.requested(params, default_size=50).slice(items)
    return {key: found, "NextToken": token}


def register_scalable_target(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"ScalableTargetARN": ctx.platform.autoscaling.register(params, region=ctx.region)}


def deregister_scalable_target(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.autoscaling.deregister(params)
    return {}


def describe_scalable_targets(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return _page(ctx.platform.autoscaling.targets(params), params, "ScalableTargets")


def put_scaling_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return {"PolicyARN": ctx.platform.autoscaling.put_policy(params, region=ctx.region), "Alarms": []}


def delete_scaling_policy(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    ctx.platform.autoscaling.delete_policy(params)
    return {}


def describe_scaling_policies(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return _page(ctx.platform.autoscaling.policies(params), params, "ScalingPolicies")


def describe_scaling_activities(ctx: RequestContext, params: dict[str, Any]) -> dict[str, Any]:
    return _page(ctx.platform.autoscaling.activities(params), params, "ScalingActivities")


OPERATIONS: dict[str, Operation] = {
    "RegisterScalableTarget": register_scalable_target,
    "DeregisterScalableTarget": deregister_scalable_target,
    "DescribeScalableTargets": describe_scalable_targets,
    "PutScalingPolicy": put_scaling_policy,
    "DeleteScalingPolicy": delete_scaling_policy,
    "DescribeScalingPolicies": describe_scaling_policies,
    "DescribeScalingActivities": describe_scaling_activities,
}


def autoscaling_api() -> JsonApi:
    return JsonApi(
        "Application Auto Scaling",
        ServiceSchema.load("application-autoscaling"),
        OPERATIONS,
        AUTOSCALING_ERRORS,
    )
