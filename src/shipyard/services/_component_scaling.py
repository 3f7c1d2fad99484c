"""Autoscaling of inference components' copy counts, as Application Auto Scaling offers it.

A scalable target ``inference-component/<name>`` (dimension
``sagemaker:inference-component:DesiredCopyCount``, MinCapacity from 0) bounds a component's copy
count; a target-tracking policy on ``SageMakerInferenceComponentInvocationsPerCopy`` keeps its
invocations per copy and minute near the target. :class:`~shipyard.services.autoscaling.AutoscalingService`
hands the calls on such a ResourceId here, and each of its passes asks :meth:`ComponentScaling.evaluate`,
which changes the copy count through UpdateInferenceComponentRuntimeConfig (the copies are then
placed as any are: a scale-out past the instances' capacity is refused with its CapacityError).
Target, policies and activities are kept on the component's record.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import logging
import uuid
from collections.abc import Callable, Mapping
from typing import Any

from shipyard.core.clock import Clock
from shipyard.core.inference_components import desired_copies
from shipyard.errors import NotFoundError, ValidationError
from shipyard.services.inference_components import InferenceComponentService
from shipyard.store import Resource

log = logging.getLogger(__name__)
DIMENSION = "sagemaker:inference-component:DesiredCopyCount"
METRIC = "SageMakerInferenceComponentInvocationsPerCopy"
PREFIX = "inference-component/"
_ACTIVITIES_KEPT = 100


def is_component(params: Mapping[str, Any]) -> bool:
    """Whether an Application Auto Scaling call is about an inference component."""
    resource = params.get("ResourceId") or ""
    return str(resource).startswith(PREFIX) or params.get("ScalableDimension") == DIMENSION


def _name(params: Mapping[str, Any]) -> str:
    resource = str(params.get("ResourceId") or "")
    name = resource.removeprefix(PREFIX)
    if not resource.startswith(PREFIX) or not name or "/" in name:
        raise ValidationError(
            f"ResourceId {resource!r} is not an inference component: inference-component/<name>",
            field="ResourceId",
            value=resource,
        )
    if params.get("ScalableDimension", DIMENSION) != DIMENSION:
        raise ValidationError(
            f"ScalableDimension of an inference component must be {DIMENSION}",
            field="ScalableDimension",
            value=params.get("ScalableDimension"),
        )
    return name


class ComponentScaling:
    """The scalable targets and policies of inference components (see the module docstring)."""

    def __init__(
        self,
        components: InferenceComponentService,
        clock: Clock,
        *,
        account_id: str,
        window: Callable[[], float],
    ) -> None:
        self._components = components
        self._clock = clock
        self._account_id = account_id
        self._window = window

    def register(self, params: Mapping[str, Any], *, region: str) -> str:
        name = _name(params)
        arn = (
            f"arn:aws:application-autoscaling:{region}:{self._account_id}:scalable-target/"
            f"{uuid.uuid5(uuid.NAMESPACE_URL, params['ResourceId']).hex}"
        )

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
            if not 0 <= target["min"] <= target["max"]:
                raise ValidationError(
                    f"Need 0 <= MinCapacity <= MaxCapacity, got {target['min']}..{target['max']}",
                    field="MinCapacity",
                    value=target["min"],
                )
            if params.get("RoleARN"):
                target["role"] = params["RoleARN"]
            if params.get("SuspendedState") is not None:
                target["suspended"] = dict(params["SuspendedState"])
            return target

        self._modify(name, change)
        return arn

    def deregister(self, params: Mapping[str, Any]) -> None:
        self._modify(_name(params), lambda target: None)

    def targets(self, wanted: set[str]) -> list[dict[str, Any]]:
        found = []
        for component in self._components.repository.find(limit=1_000_000):
            target = component.state.get("scaling")
            resource_id = PREFIX + component.name
            if target is None or (wanted and resource_id not in wanted):
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
        name = _name(params)
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
                f"Shipyard tracks the predefined metric {METRIC} for inference components; got "
                f"{metric or 'a customized metric'}",
                field="TargetTrackingScalingPolicyConfiguration.PredefinedMetricSpecification",
                value=metric,
            )
        if not config.get("TargetValue", 0) > 0:
            raise ValidationError(
                "TargetValue must be positive",
                field="TargetTrackingScalingPolicyConfiguration.TargetValue",
                value=config.get("TargetValue"),
            )
        policy = params["PolicyName"]
        arn = (
            f"arn:aws:autoscaling:{region}:{self._account_id}:scalingPolicy:{uuid.uuid4()}:"
            f"resource/sagemaker/{params['ResourceId']}:policyName/{policy}"
        )

        def change(target: dict[str, Any] | None) -> dict[str, Any]:
            if target is None:
                raise NotFoundError(
                    f"No scalable target registered for {params['ResourceId']}: call RegisterScalableTarget first"
                )
            policies = dict(target["policies"])
            kept = policies.get(policy, {}).get("arn", arn)
            policies[policy] = {"config": dict(config), "arn": kept, "created": self._clock.now().isoformat()}
            return {**target, "policies": policies}

        target = self._modify(name, change)
        assert target is not None
        return str(target["policies"][policy]["arn"])

    def delete_policy(self, params: Mapping[str, Any]) -> None:
        policy = params["PolicyName"]

        def change(target: dict[str, Any] | None) -> dict[str, Any]:
            if target is None or policy not in target["policies"]:
                raise NotFoundError(f"No scaling policy {policy!r} for {params['ResourceId']}")
            return {**target, "policies": {k: v for k, v in target["policies"].items() if k != policy}}

        self._modify(_name(params), change)

    def policies(self, resource_id: str | None, names: set[str]) -> list[dict[str, Any]]:
        found = []
        for target in self.targets({resource_id} if resource_id else set()):
            record = self._components.get(target["ResourceId"].removeprefix(PREFIX))
            for name, policy in record.state["scaling"]["policies"].items():
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

    def activities(self, resource_id: str | None) -> list[dict[str, Any]]:
        found = []
        for component in self._components.repository.find(limit=1_000_000):
            for activity in component.state.get("scaling_activities") or []:
                if resource_id and activity["ResourceId"] != resource_id:
                    continue
                found.append(
                    {
                        **activity,
                        "StartTime": dt.datetime.fromisoformat(activity["StartTime"]),
                        "EndTime": dt.datetime.fromisoformat(activity["EndTime"]),
                    }
                )
        return found

    # -- the scaler ----------------------------------------------------------------------------------
    def evaluate(self) -> None:
        """One look at every scaled component in service; change the copies of those off target."""
        now = self._clock.now().timestamp()
        window = self._window()
        for component in self._components.repository.find(status="InService", limit=1_000_000):
            target = component.state.get("scaling")
            if not target or not target.get("policies"):
                continue
            copies = int(component.state["copies"])
            calls = self._components.invocations(component.name, window)
            desired, cause = desired_copies(copies, calls, window, target, now)
            if desired != copies:
                self._scale(component, copies, desired, cause, now)

    def _scale(self, component: Resource, copies: int, desired: int, cause: str, now: float) -> None:
        try:
            self._components.update_runtime_config(
                {"InferenceComponentName": component.name, "DesiredRuntimeConfig": {"CopyCount": desired}}
            )
        except (ValidationError, NotFoundError) as exc:  # updating already, or gone: look again later
            log.info("Autoscaling %s: not now (%s)", component.name, exc.message)
            return
        stamp = self._clock.now().isoformat()

        def record(current: Resource) -> Resource:
            scaling = (
                {**current.state["scaling"], "last_scaled": now} if current.state.get("scaling") else None
            )
            activities = [
                *(current.state.get("scaling_activities") or []),
                {
                    "ActivityId": str(uuid.uuid4()),
                    "ServiceNamespace": "sagemaker",
                    "ResourceId": PREFIX + component.name,
                    "ScalableDimension": DIMENSION,
                    "Description": f"Setting desired copy count to {desired}.",
                    "Cause": f"monitor alarm: {cause}; changing the desired capacity from {copies} to {desired}",
                    "StartTime": stamp,
                    "EndTime": stamp,
                    "StatusCode": "Successful",
                    "StatusMessage": f"Successfully set desired copy count to {desired}.",
                },
            ]
            state = {
                **current.state,
                "scaling": scaling,
                "scaling_activities": activities[-_ACTIVITIES_KEPT:],
            }
            return dataclasses.replace(current, state=state)

        self._components.repository.modify(component.name, record)
        log.info("Autoscaling %s: %d -> %d copies (%s)", component.name, copies, desired, cause)

    def _modify(self, name: str, change: Any) -> dict[str, Any] | None:
        result: dict[str, dict[str, Any] | None] = {}

        def apply(record: Resource) -> Resource:
            target = change(record.state.get("scaling"))
            result["target"] = target
            return dataclasses.replace(record, state={**record.state, "scaling": target})

        self._components.repository.modify(name, apply)  # a missing one: "Could not find inference component"
        return result["target"]


__all__ = ["DIMENSION", "METRIC", "ComponentScaling", "is_component"]
