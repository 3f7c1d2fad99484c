"""Models, endpoint configs and endpoints: what the hosting requests say, validated."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any

from shipyard.errors import ValidationError


class EndpointStatus(enum.StrEnum):
    CREATING = "Creating"
    UPDATING = "Updating"
    IN_SERVICE = "InService"
    DELETING = "Deleting"
    FAILED = "Failed"


def _unsupported(field: str, what: str) -> ValidationError:
    return ValidationError(f"{field} ({what}) is not supported by Shipyard yet", field=field)


@dataclasses.dataclass(frozen=True)
class ContainerSpec:
    """The model's container: an image (a framework environment), its artifacts and environment."""

    image: str
    model_data_url: str | None
    environment: Mapping[str, str]

    @property
    def program(self) -> str | None:
        return self.environment.get("SAGEMAKER_PROGRAM") or None

    @property
    def submit_directory(self) -> str | None:
        return self.environment.get("SAGEMAKER_SUBMIT_DIRECTORY") or None


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    name: str
    container: ContainerSpec

    @classmethod
    def from_request(cls, params: Mapping[str, Any]) -> ModelSpec:
        primary = params.get("PrimaryContainer")
        containers: Sequence[Mapping[str, Any]] = params.get("Containers") or []
        if primary is None and len(containers) == 1:
            primary, field = containers[0], "Containers.0"
        elif primary is not None and not containers:
            field = "PrimaryContainer"
        elif primary is None and not containers:
            raise ValidationError("A model needs PrimaryContainer (or Containers)", field="PrimaryContainer")
        else:
            raise _unsupported("Containers", "inference pipelines of several containers")
        if primary.get("ModelDataSource"):
            raise _unsupported(f"{field}.ModelDataSource", "uncompressed model data; give ModelDataUrl")
        if primary.get("Mode", "SingleModel") != "SingleModel":
            raise _unsupported(f"{field}.Mode", "multi-model endpoints")
        image = primary.get("Image")
        if not image:
            raise ValidationError(f"{field}.Image is required", field=f"{field}.Image")
        return cls(
            params["ModelName"],
            ContainerSpec(image, primary.get("ModelDataUrl"), dict(primary.get("Environment") or {})),
        )


@dataclasses.dataclass(frozen=True)
class VariantSpec:
    name: str
    model: str
    instance_count: int
    instance_type: str
    weight: float


@dataclasses.dataclass(frozen=True)
class EndpointConfigSpec:
    name: str
    variants: tuple[VariantSpec, ...]

    @classmethod
    def from_request(cls, params: Mapping[str, Any]) -> EndpointConfigSpec:
        for field, what in (
            ("DataCaptureConfig", "capturing requests and responses"),
            ("AsyncInferenceConfig", "asynchronous inference"),
            ("ShadowProductionVariants", "shadow variants"),
        ):
            if params.get(field):
                raise _unsupported(field, what)
        variants = []
        for index, raw in enumerate(params["ProductionVariants"]):
            field = f"ProductionVariants.{index}"
            if raw.get("ServerlessConfig"):
                raise _unsupported(f"{field}.ServerlessConfig", "serverless endpoints; give InstanceType")
            if not raw.get("InstanceType"):
                raise ValidationError(f"{field}.InstanceType is required", field=f"{field}.InstanceType")
            if not raw.get("ModelName"):
                raise ValidationError(f"{field}.ModelName is required", field=f"{field}.ModelName")
            count = int(raw.get("InitialInstanceCount", 1))
            weight = float(raw.get("InitialVariantWeight", 1.0))
            if count < 1:
                raise ValidationError(
                    f"{field}.InitialInstanceCount must be at least 1, got {count}",
                    field=f"{field}.InitialInstanceCount",
                    value=count,
                )
            if weight < 0:
                raise ValidationError(
                    f"{field}.InitialVariantWeight must not be negative, got {weight:g}",
                    field=f"{field}.InitialVariantWeight",
                    value=weight,
                )
            variants.append(
                VariantSpec(raw["VariantName"], raw["ModelName"], count, raw["InstanceType"], weight)
            )
        names = [v.name for v in variants]
        if len(set(names)) != len(names):
            raise ValidationError(
                f"VariantNames must be unique within an endpoint config, got {names}",
                field="ProductionVariants",
                value=names,
            )
        if not any(v.weight > 0 for v in variants):
            raise ValidationError(
                "At least one production variant needs a positive InitialVariantWeight",
                field="ProductionVariants",
            )
        return cls(params["EndpointConfigName"], tuple(variants))
