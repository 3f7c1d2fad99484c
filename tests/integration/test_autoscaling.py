"""Endpoint autoscaling through boto3's application-autoscaling client: a target-tracking policy on
SageMakerVariantInvocationsPerInstance scales a variant out under load and back in without it."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from tests._support import boto_client
from tests.integration.test_endpoints import BUCKET, IRIS, _deploy, _wait, _wait_status, train_iris


@pytest.fixture(scope="module")
def scaling_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    # Look every second over a 4-second window, so that a test sees scaling in seconds.
    env = {"SHIPYARD_AUTOSCALING_INTERVAL_SECONDS": "1", "SHIPYARD_AUTOSCALING_WINDOW_SECONDS": "4"}
    with ServerProcess(tmp_path_factory.mktemp("scaling") / "data", env=env) as server:
        boto_client("s3", server.url).create_bucket(Bucket=BUCKET)
        yield server


def _count(sm: Any, name: str) -> int:
    return int(sm.describe_endpoint(EndpointName=name)["ProductionVariants"][0]["DesiredInstanceCount"])


def test_target_tracking_scales_out_under_load_and_in_without_it(scaling_server: ServerProcess) -> None:
    sm, s3, runtime = (boto_client(s, scaling_server.url) for s in ("sagemaker", "s3", "sagemaker-runtime"))
    scaling = boto_client("application-autoscaling", scaling_server.url)
    name = _deploy(sm, s3, train_iris(sm, s3))
    assert _wait(sm, name)["EndpointStatus"] == "InService"
    resource = f"endpoint/{name}/variant/AllTraffic"
    scaling.register_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        MinCapacity=1,
        MaxCapacity=3,
    )
    scaling.put_scaling_policy(
        PolicyName="invocations",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
        PolicyType="TargetTrackingScaling",
        TargetTrackingScalingPolicyConfiguration={
            "TargetValue": 60.0,
            "PredefinedMetricSpecification": {
                "PredefinedMetricType": "SageMakerVariantInvocationsPerInstance"
            },
            "ScaleOutCooldown": 0,
            "ScaleInCooldown": 2,
        },
    )
    [target] = scaling.describe_scalable_targets(ServiceNamespace="sagemaker", ResourceIds=[resource])[
        "ScalableTargets"
    ]
    assert (target["MinCapacity"], target["MaxCapacity"]) == (1, 3)
    [policy] = scaling.describe_scaling_policies(ServiceNamespace="sagemaker", ResourceId=resource)[
        "ScalingPolicies"
    ]
    assert policy["TargetTrackingScalingPolicyConfiguration"]["TargetValue"] == 60.0

    body = json.dumps(IRIS[:1])
    deadline = time.monotonic() + 60
    while _count(sm, name) < 3:  # far above 60 a minute per instance: out to the maximum
        for _ in range(20):
            runtime.invoke_endpoint(EndpointName=name, Body=body, ContentType="application/json")
        assert time.monotonic() < deadline, "never scaled out"
    endpoint = _wait_status(sm, name, "InService")
    assert endpoint["ProductionVariants"][0]["CurrentInstanceCount"] == 3
    deadline = time.monotonic() + 60
    while _count(sm, name) > 1:  # no traffic: back in to the minimum
        assert time.monotonic() < deadline, "never scaled in"
        time.sleep(0.2)
    endpoint = _wait_status(sm, name, "InService")
    assert endpoint["ProductionVariants"][0]["CurrentInstanceCount"] == 1
    activities = scaling.describe_scaling_activities(ServiceNamespace="sagemaker", ResourceId=resource)[
        "ScalingActivities"
    ]
    assert activities[0]["Description"] == "Setting desired instance count to 1."
    assert any(a["Description"] == "Setting desired instance count to 3." for a in activities)

    with pytest.raises(ClientError, match="supports PolicyType TargetTrackingScaling"):
        scaling.put_scaling_policy(
            PolicyName="steps",
            ServiceNamespace="sagemaker",
            ResourceId=resource,
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            PolicyType="StepScaling",
        )
    with pytest.raises(ClientError, match="Could not find endpoint"):
        scaling.register_scalable_target(
            ServiceNamespace="sagemaker",
            ResourceId="endpoint/missing/variant/AllTraffic",
            ScalableDimension="sagemaker:variant:DesiredInstanceCount",
            MinCapacity=1,
            MaxCapacity=2,
        )
    scaling.delete_scaling_policy(
        PolicyName="invocations",
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
    )
    scaling.deregister_scalable_target(
        ServiceNamespace="sagemaker",
        ResourceId=resource,
        ScalableDimension="sagemaker:variant:DesiredInstanceCount",
    )
    assert scaling.describe_scalable_targets(ServiceNamespace="sagemaker")["ScalableTargets"] == []
