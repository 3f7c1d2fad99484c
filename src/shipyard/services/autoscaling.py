"""Endpoint autoscaling as Application Auto Scaling offers it for SageMaker variants.

A scalable target (``endpoint/<endpoint>/variant/<variant>``, dimension
``sagemaker:variant:DesiredInstanceCount``) bounds a variant's instance count; a target-tracking
policy on ``SageMakerVariantInvocationsPerInstance`` keeps the invocations per instance and minute
near its target. Every ``interval`` seconds the scaler measures each variant's rate over the last
``window`` seconds and sets the count to ``ceil(count * rate / target)`` within the bounds,
honouring the policy's cooldowns and DisableScaleIn, through UpdateEndpointWeightsAndCapacities.
Targets, policies and activities are kept on the endpoint's record. An inference component's copy
count (``inference-component/<name>``) is scaled the same way by ``_component_scaling.py``.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import math
import threading
import uuid
from collections.abc import Mapping
from typing import Any

from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.errors import LimitExceededError, NotFoundError, ValidationError
from shipyard.services._component_scaling import ComponentScaling, is_component
from shipyard.services.endpoints import EndpointService
from shipyard.store import Resource

log = logging.getLogger(__name__)
DIMENSION = "sagemaker:variant:DesiredInstanceCount"
COMPONENT_DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
METRIC = "SageMakerVariantInvocationsPerInstance"
_ACTIVITIES_KEPT = 100


def _parse_resource_id(resource_id: str) -> tuple[str, str]:
    parts = resource_id.split("/")
    if len(parts) != 4 or parts[0] != "endpoint" or parts[2] != "variant" or not parts[1] or not parts[3]:
        raise ValidationError(
            f"ResourceId {resource_id!r} is not a SageMaker variant: endpoint/<endpoint name>/variant/<variant name>",
            field="ResourceId",
            value=resource_id,
        )
    return parts[1], parts[3]


def _check_namespace(params: Mapping[str, Any]) -> None:
    if params.get("ServiceNamespace") != "sagemaker":
        raise ValidationError(
            f"Shipyard scales SageMaker endpoint variants only; ServiceNamespace {params.get('ServiceNamespace')!r} "
            "is not served",
            field="ServiceNamespace",
            value=params.get("ServiceNamespace"),
        )
    if params.get("ScalableDimension", DIMENSION) != DIMENSION:
        raise ValidationError(
            f"ScalableDimension must be {DIMENSION}",
            field="ScalableDimension",
            value=params.get("ScalableDimension"),
        )


class AutoscalingService:
    def __init__(
        self,
        endpoints: EndpointService,
        *,
        account_id: str,
        interval: float = 10.0,
        window: float = 60.0,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self._endpoints = endpoints
        self._clock = clock
        self._account_id = account_id
        self._interval = interval
        self._window = window
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._components = ComponentScaling(
            endpoints.components, clock, account_id=account_id, window=lambda: self._window
        )

    # -- API operations ------------------------------------------------------------------------------
    def register(self, params: Mapping[str, Any], *, region: str) -> str:
        if is_component(params):
            _check_namespace({**params, "ScalableDimension": DIMENSION})
            return self._components.register(params, region=region)
        _check_namespace(params)
        endpoint, variant = _parse_resource_id(params["ResourceId"])
        for wanted in self._endpoints.get(endpoint).state["variants"]:
            if wanted["name"] == variant and wanted.get("serverless"):
                raise ValidationError(
                    f"The variant {variant!r} of endpoint {endpoint!r} is serverless: its model server "
                    f"starts and stops with its requests, it has no {DIMENSION} to scale",
                    field="ResourceId",
                    value=params["ResourceId"],
                )
        arn = f"arn:aws:application-autoscaling:{region}:{self._account_id}:scalable-target/{uuid.uuid5(uuid.NAMESPACE_URL, params['ResourceId']).hex}"

        def change(target: dict[str, Any] | None) -> dict[str, Any]:
            target = dict(target or {"created": self._clock.now().isoformat(), "policies": {}, "arn": arn})
            for key, field in (("min", "MinCapacity"), ("max", "MaxCapacity")):
                if params.get(field) is not None:
                    target[key] = int(params[field])
            if "min" not in target or "max" not in target:
                raise ValidationError(
                    "MinCapacity and MaxCapacity are required when registering a new scalable target",
                    field="MinCapacity",
                )
            if not 1 <= target["min"] <= target["max"]:
                raise ValidationError(
                    f"Need 1 <= MinCapacity <= MaxCapacity, got {target['min']}..{target['max']}",
                    field="MinCapacity",
                    value=target["min"],
                )
            if params.get("RoleARN"):
                target["role"] = params["RoleARN"]
            if params.get("SuspendedState") is not None:
                target["suspended"] = dict(params["SuspendedState"])
            return target

        self._modify_target(endpoint, variant, change)
        return arn

    def deregister(self, params: Mapping[str, Any]) -> None:
        if is_component(params):
            _check_namespace({**params, "ScalableDimension": DIMENSION})
            return self._components.deregister(params)
        _check_namespace(params)
        endpoint, variant = _parse_resource_id(params["ResourceId"])
        self._modify_target(endpoint, variant, lambda target: None)

    def targets(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        dimension = params.get("ScalableDimension")
        _check_namespace(
            {**params, "ScalableDimension": DIMENSION} if dimension == COMPONENT_DIMENSION else params
        )
        wanted = set(params.get("ResourceIds") or [])
        found = [] if dimension == DIMENSION else self._components.targets(wanted)
        if dimension == COMPONENT_DIMENSION:
            return found
        for endpoint in self._endpoints.repository.find(limit=100_000):
            for variant, target in (endpoint.state.get("scaling") or {}).items():
                resource_id = f"endpoint/{endpoint.name}/variant/{variant}"
                if wanted and resource_id not in wanted:
                    continue
                found.append(
                    {
                        "ServiceNamespace": "sagemaker",
                        "ResourceId": resource_id,
                        "ScalableDimension": DIMENSION,
                        "MinCapacity": target["min"],
                        "MaxCapacity": target["max"],
                        "RoleARN": target.get("role", ""),
                        "CreationTime": dt.datetime.fromisoformat(target["created"]),
                        "SuspendedState": target.get("suspended"),
                        "ScalableTargetARN": target["arn"],
                    }
                )
        return found

    def put_policy(self, params: Mapping[str, Any], *, region: str) -> str:
        if is_component(params):
            _check_namespace({**params, "ScalableDimension": DIMENSION})
            return self._components.put_policy(params, region=region)
        _check_namespace(params)
        endpoint, variant = _parse_resource_id(params["ResourceId"])
        if params.get("PolicyType", "StepScaling") != "TargetTrackingScaling":
            raise ValidationError(
                "Shipyard supports PolicyType TargetTrackingScaling (step scaling needs CloudWatch alarms)",
                field="PolicyType",
                value=params.get("PolicyType"),
            )
        config = params.get("TargetTrackingScalingPolicyConfiguration") or {}
        metric = (config.get("PredefinedMetricSpecification") or {}).get("PredefinedMetricType")
        if metric != METRIC:
            raise ValidationError(
                f"Shipyard tracks the predefined metric {METRIC}; got {metric or 'a customized metric'}",
                field="TargetTrackingScalingPolicyConfiguration.PredefinedMetricSpecification",
                value=metric,
            )
        if not config.get("TargetValue", 0) > 0:
            raise ValidationError(
                "TargetValue must be positive",
                field="TargetTrackingScalingPolicyConfiguration.TargetValue",
                value=config.get("TargetValue"),
            )
        name = params["PolicyName"]
        arn = (
            f"arn:aws:autoscaling:{region}:{self._account_id}:scalingPolicy:{uuid.uuid4()}:"
            f"resource/sagemaker/{params['ResourceId']}:policyName/{name}"
        )

        def change(target: dict[str, Any] | None) -> dict[str, Any]:
            if target is None:
                raise NotFoundError(
                    f"No scalable target registered for {params['ResourceId']}: call RegisterScalableTarget first"
                )
            policies = dict(target["policies"])
            arn_kept = policies.get(name, {}).get("arn", arn)
            policies[name] = {
                "config": dict(config),
                "arn": arn_kept,
                "created": self._clock.now().isoformat(),
            }
            return {**target, "policies": policies}

        target = self._modify_target(endpoint, variant, change)
        assert target is not None
        return str(target["policies"][name]["arn"])

    def delete_policy(self, params: Mapping[str, Any]) -> None:
        if is_component(params):
            _check_namespace({**params, "ScalableDimension": DIMENSION})
            return self._components.delete_policy(params)
        _check_namespace(params)
        endpoint, variant = _parse_resource_id(params["ResourceId"])

        def change(target: dict[str, Any] | None) -> dict[str, Any]:
            if target is None or params["PolicyName"] not in target["policies"]:
                raise NotFoundError(f"No scaling policy {params['PolicyName']!r} for {params['ResourceId']}")
            return {
                **target,
                "policies": {k: v for k, v in target["policies"].items() if k != params["PolicyName"]},
            }

        self._modify_target(endpoint, variant, change)

    def policies(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        names = set(params.get("PolicyNames") or [])
        if is_component(params):
            _check_namespace({**params, "ScalableDimension": DIMENSION})
            return self._components.policies(params.get("ResourceId"), names)
        _check_namespace(params)
        mixed = not params.get("ScalableDimension") and not params.get("ResourceId")
        found = self._components.policies(None, names) if mixed else []
        for target in self.targets(
            {**params, "ResourceIds": [params["ResourceId"]] if params.get("ResourceId") else []}
        ):
            if target["ScalableDimension"] != DIMENSION:
                continue
            endpoint, variant = _parse_resource_id(target["ResourceId"])
            policies = self._endpoints.get(endpoint).state["scaling"][variant]["policies"]
            for name, policy in policies.items():
                if names and name not in names:
                    continue
                found.append(
                    {
                        "PolicyARN": policy["arn"],
                        "PolicyName": name,
                        "ServiceNamespace": "sagemaker",
                        "ResourceId": target["ResourceId"],
                        "ScalableDimension": DIMENSION,
                        "PolicyType": "TargetTrackingScaling",
                        "TargetTrackingScalingPolicyConfiguration": policy["config"],
                        "Alarms": [],
                        "CreationTime": dt.datetime.fromisoformat(policy["created"]),
                    }
                )
        return found

    def activities(self, params: Mapping[str, Any]) -> list[dict[str, Any]]:
        if is_component(params):
            _check_namespace({**params, "ScalableDimension": DIMENSION})
        else:
            _check_namespace(params)
        found = self._components.activities(params.get("ResourceId"))
        for endpoint in self._endpoints.repository.find(limit=100_000):
            for activity in endpoint.state.get("scaling_activities") or []:
                if params.get("ResourceId") and activity["ResourceId"] != params["ResourceId"]:
                    continue
                found.append(
                    {
                        **activity,
                        "StartTime": dt.datetime.fromisoformat(activity["StartTime"]),
                        "EndTime": dt.datetime.fromisoformat(activity["EndTime"]),
                    }
                )
        return sorted(found, key=lambda a: a["StartTime"], reverse=True)

    def _modify_target(self, endpoint: str, variant: str, change: Any) -> dict[str, Any] | None:
        result: dict[str, dict[str, Any] | None] = {}

        def apply(record: Resource) -> Resource:
            if variant not in {v["name"] for v in record.state["variants"]}:
                raise ValidationError(
                    f"Endpoint {endpoint!r} has no variant {variant!r}", field="ResourceId", value=variant
                )
            scaling = dict(record.state.get("scaling") or {})
            target = change(scaling.get(variant))
            if target is None:
                scaling.pop(variant, None)
            else:
                scaling[variant] = target
            result["target"] = target
            return dataclasses.replace(record, state={**record.state, "scaling": scaling})

        self._endpoints.repository.modify(endpoint, apply)  # a missing endpoint: "Could not find endpoint"
        return result["target"]

    # -- the scaler ----------------------------------------------------------------------------------
    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="shipyard-autoscaling", daemon=True)
        self._thread.start()

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.wait(self._interval):
            try:
                self.evaluate()
            except Exception:
                log.exception("Autoscaling pass failed")

    def evaluate(self) -> None:
        """One look at every scaled variant and inference component; scale those off their target."""
        try:
            self._components.evaluate()
        except Exception:  # the variants are scaled all the same
            log.exception("Autoscaling inference components failed")
        now = self._clock.now().timestamp()
        for endpoint in self._endpoints.repository.find(status="InService", limit=100_000):
            changes = []
            for variant in endpoint.state["variants"]:
                target = (endpoint.state.get("scaling") or {}).get(variant["name"])
                if target is None:
                    continue
                count = int(variant["instance_count"])
                desired, cause = self._desired(endpoint.name, variant["name"], count, target, now)
                if desired != count:
                    changes.append((variant["name"], count, desired, cause))
            if changes:
                self._scale(endpoint, changes, now)

    def _desired(
        self, endpoint: str, variant: str, count: int, target: Mapping[str, Any], now: float
    ) -> tuple[int, str]:
        suspended = target.get("suspended") or {}
        low, high = int(target["min"]), int(target["max"])
        if count < low or count > high:
            return max(low, min(high, count)), f"the instance count {count} is outside {low}..{high}"
        invocations = self._endpoints.metrics.invocations(endpoint, variant, self._window)
        rate = invocations / count * 60.0 / self._window  # per instance and minute
        last = float(target.get("last_scaled", 0))
        for policy in target["policies"].values():
            config = policy["config"]
            wanted = max(low, min(high, math.ceil(count * rate / float(config["TargetValue"]))))
            out = wanted > count and not suspended.get("DynamicScalingOutSuspended")
            scale_in = (
                wanted < count
                and not config.get("DisableScaleIn")
                and not suspended.get("DynamicScalingInSuspended")
            )
            cooldown = float(config.get("ScaleOutCooldown" if out else "ScaleInCooldown", 300))
            if (out or scale_in) and now - last >= cooldown:
                side = "above" if out else "below"
                return wanted, f"{METRIC} {rate:.1f} is {side} the target {config['TargetValue']:g}"
        return count, ""

    def _scale(self, endpoint: Resource, changes: list[tuple[str, int, int, str]], now: float) -> None:
        try:
            self._endpoints.update_weights_and_capacities(
                {
                    "EndpointName": endpoint.name,
                    "DesiredWeightsAndCapacities": [
                        {"VariantName": variant, "DesiredInstanceCount": desired}
                        for variant, _, desired, _ in changes
                    ],
                }
            )
        except (ValidationError, LimitExceededError) as exc:
            # Updating already, or a site quota: look again later.
            log.info("Autoscaling %s: not now (%s)", endpoint.name, exc.message)
            return
        stamp = self._clock.now().isoformat()

        def record(current: Resource) -> Resource:
            scaling = dict(current.state.get("scaling") or {})
            activities = list(current.state.get("scaling_activities") or [])
            for variant, count, desired, cause in changes:
                if variant in scaling:
                    scaling[variant] = {**scaling[variant], "last_scaled": now}
                resource_id = f"endpoint/{endpoint.name}/variant/{variant}"
                activities.append(
                    {
                        "ActivityId": str(uuid.uuid4()),
                        "ServiceNamespace": "sagemaker",
                        "ResourceId": resource_id,
                        "ScalableDimension": DIMENSION,
                        "Description": f"Setting desired instance count to {desired}.",
                        "Cause": f"monitor alarm: {cause}; changing the desired capacity from {count} to {desired}",
                        "StartTime": stamp,
                        "EndTime": stamp,
                        "StatusCode": "Successful",
                        "StatusMessage": f"Successfully set desired instance count to {desired}.",
                    }
                )
            state = {
                **current.state,
                "scaling": scaling,
                "scaling_activities": activities[-_ACTIVITIES_KEPT:],
            }
            return dataclasses.replace(current, state=state)

        self._endpoints.repository.modify(endpoint.name, record)
        for variant, count, desired, cause in changes:
            log.info(
                "Autoscaling %s/%s: %d -> %d instances (%s)", endpoint.name, variant, count, desired, cause
            )
