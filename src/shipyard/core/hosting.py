"""Models, endpoint configs and endpoints: what the hosting requests say, validated."""

from __future__ import annotations

import dataclasses
import enum
from collections.abc import Mapping, Sequence
from typing import Any

from shipyard.core.async_inference import AsyncInferenceConfig
from shipyard.core.serverless import ServerlessConfig
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
    """A production variant. A serverless one (``serverless`` set) has no instance type and no
    instances of its own (``instance_count`` 0): its model server starts on demand. One without a
    model (``model`` empty) is capacity for inference components: its instances run no model
    server of their own (``core/inference_components.py``)."""

    name: str
    model: str
    instance_count: int
    instance_type: str
    weight: float
    serverless: ServerlessConfig | None = None

    @property
    def for_components(self) -> bool:
        """Capacity for inference components (no ModelName)."""
        return not self.model


@dataclasses.dataclass(frozen=True)
class EndpointConfigSpec:
    name: str
    variants: tuple[VariantSpec, ...]
    async_inference: AsyncInferenceConfig | None = None  # InvokeEndpointAsync's queue and outputs

    @classmethod
    def from_request(cls, params: Mapping[str, Any]) -> EndpointConfigSpec:
        for field, what in (
            ("DataCaptureConfig", "capturing requests and responses"),
            ("ShadowProductionVariants", "shadow variants"),
        ):
            if params.get(field):
                raise _unsupported(field, what)
        variants = []
        raws = params["ProductionVariants"]
        _check_model_names(raws, params)
        for index, raw in enumerate(raws):
            field = f"ProductionVariants.{index}"
            if raw.get("ServerlessConfig"):
                variants.append(_serverless_variant(raw, field))
                continue
            if not raw.get("InstanceType"):
                raise ValidationError(
                    f"{field}: give InstanceType (with InitialInstanceCount) or ServerlessConfig",
                    field=f"{field}.InstanceType",
                )
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
                VariantSpec(
                    raw["VariantName"], raw.get("ModelName") or "", count, raw["InstanceType"], weight
                )
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
        asynchronous = AsyncInferenceConfig.from_request(params.get("AsyncInferenceConfig"))
        if asynchronous is not None and any(v.serverless is not None for v in variants):
            raise ValidationError(
                "AsyncInferenceConfig cannot be combined with a serverless variant (ServerlessConfig), "
                "as on SageMaker: give the variants an InstanceType",
                field="AsyncInferenceConfig",
            )
        if asynchronous is not None and any(v.for_components for v in variants):
            raise _unsupported("AsyncInferenceConfig", "asynchronous inference on inference components")
        return cls(params["EndpointConfigName"], tuple(variants), asynchronous)

    @property
    def for_components(self) -> bool:
        """An endpoint for inference components: its variants name no model."""
        return any(v.for_components for v in self.variants)


def _check_model_names(raws: Sequence[Mapping[str, Any]], params: Mapping[str, Any]) -> None:
    """Every variant names its model, or none does (an endpoint for inference components, which
    needs the config's ExecutionRoleArn), as SageMaker checks."""
    without = [i for i, raw in enumerate(raws) if not raw.get("ModelName")]
    if not without:
        return
    if len(without) != len(raws):
        index = without[0]
        raise ValidationError(
            f"ProductionVariants.{index}.ModelName is required: either every production variant names "
            "its model, or none does (an endpoint for inference components)",
            field=f"ProductionVariants.{index}.ModelName",
        )
    for index, raw in enumerate(raws):
        if raw.get("ServerlessConfig"):
            raise ValidationError(
                f"ProductionVariants.{index}.ModelName is required for a serverless variant "
                "(ServerlessConfig): inference components run on instances (InstanceType)",
                field=f"ProductionVariants.{index}.ModelName",
            )
    if not params.get("ExecutionRoleArn"):
        raise ValidationError(
            "ExecutionRoleArn is required for an endpoint config whose production variants name no "
            "model (an endpoint for inference components)",
            field="ExecutionRoleArn",
        )


def _serverless_variant(raw: Mapping[str, Any], field: str) -> VariantSpec:
    for other in ("InstanceType", "InitialInstanceCount"):
        if raw.get(other) is not None:
            raise ValidationError(
                f"{field}: a serverless variant (ServerlessConfig) takes no {other}; give one or the other",
                field=f"{field}.{other}",
                value=raw[other],
            )
    serverless = ServerlessConfig.from_request(raw["ServerlessConfig"], f"{field}.ServerlessConfig")
    weight = float(raw.get("InitialVariantWeight", 1.0))
    if weight < 0:
        raise ValidationError(
            f"{field}.InitialVariantWeight must not be negative, got {weight:g}",
            field=f"{field}.InitialVariantWeight",
            value=weight,
        )
    return VariantSpec(raw["VariantName"], raw["ModelName"], 0, "", weight, serverless)


# -- an endpoint's life ------------------------------------------------------------------------------
class Step(enum.StrEnum):
    """What bringing an endpoint's model servers to its record takes next (:meth:`EndpointState.step`)."""

    BRING_UP = "bring up"  # start every variant as the record has them, then serve
    ROLL_OUT = "roll out"  # start the new config's variants beside the old ones, then switch
    RESCALE = "rescale"  # start or retire instances until each variant has its desired count
    WATCH = "watch"  # serving as wanted: replace model servers that end
    FINISH_DELETE = "finish delete"  # a deletion a restart interrupted
    NOTHING = "nothing"


@dataclasses.dataclass(frozen=True)
class EndpointState:
    """Where an endpoint stands: its status, the config it serves, its variants as wanted (weights
    and instance counts), the config an update moves it to, and why it last failed.

    Transitions return new states. Those an API call asks for (:meth:`update`, :meth:`rescale`)
    raise ValidationError when the endpoint cannot take them; those that report how an operation
    ended are no-ops in a status they do not apply to (a deleted endpoint stays deleted).
    """

    status: EndpointStatus
    config: str
    variants: tuple[VariantSpec, ...]
    updating_to: str | None = None
    failure_reason: str | None = None

    @classmethod
    def new(cls, config: EndpointConfigSpec) -> EndpointState:
        return cls(EndpointStatus.CREATING, config.name, config.variants)

    # -- as the store keeps it (the keys of the endpoint record's state that are this object's) ----
    @classmethod
    def from_record(cls, status: str | None, state: Mapping[str, Any]) -> EndpointState:
        if status is None:
            raise ValueError("an endpoint record without a status")
        return cls(
            EndpointStatus(status),
            state["config"],
            tuple(
                VariantSpec(
                    v["name"],
                    v["model"],
                    int(v["instance_count"]),
                    v["instance_type"],
                    float(v["weight"]),
                    ServerlessConfig.from_record(v.get("serverless")),
                )
                for v in state["variants"]
            ),
            state.get("updating_to"),
            state.get("failure_reason"),
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "config": self.config,
            "variants": [
                {
                    "name": v.name,
                    "model": v.model,
                    "instance_type": v.instance_type,
                    "instance_count": v.instance_count,
                    "weight": v.weight,
                    **({"serverless": v.serverless.to_record()} if v.serverless else {}),
                }
                for v in self.variants
            ],
            "updating_to": self.updating_to,
            "failure_reason": self.failure_reason,
        }

    # -- what to do next ---------------------------------------------------------------------------
    def step(self, *, serving: bool) -> Step:
        """What the model servers need next, given whether this endpoint's are in service here
        (after a server start, none are: every endpoint that should serve is brought up again)."""
        if self.status == EndpointStatus.DELETING:
            return Step.FINISH_DELETE
        if self.status == EndpointStatus.FAILED:
            return Step.NOTHING
        if not serving:
            return Step.BRING_UP
        if self.status == EndpointStatus.UPDATING:
            return Step.ROLL_OUT if self.updating_to else Step.RESCALE
        return Step.WATCH

    # -- asked for ---------------------------------------------------------------------------------
    def _check_updatable(self, name: str, serving: bool) -> None:
        if self.status != EndpointStatus.IN_SERVICE or not serving:
            raise ValidationError(
                f"Cannot update endpoint {name!r} while it is {self.status}; wait until it is InService",
                field="EndpointName",
                value=name,
            )

    def update(self, name: str, config: str, *, serving: bool) -> EndpointState:
        """UpdateEndpoint: move to ``config`` (its model servers start beside the current ones)."""
        self._check_updatable(name, serving)
        return dataclasses.replace(
            self, status=EndpointStatus.UPDATING, updating_to=config, failure_reason=None
        )

    def rescale(self, name: str, variants: Sequence[VariantSpec], *, serving: bool) -> EndpointState:
        """UpdateEndpointWeightsAndCapacities: the variants' new weights and instance counts."""
        self._check_updatable(name, serving)
        if not any(v.weight > 0 for v in variants):
            raise ValidationError(
                "At least one production variant must keep a positive weight",
                field="DesiredWeightsAndCapacities",
            )
        return dataclasses.replace(
            self, status=EndpointStatus.UPDATING, variants=tuple(variants), failure_reason=None
        )

    def delete(self) -> EndpointState:
        return dataclasses.replace(self, status=EndpointStatus.DELETING)

    # -- how an operation ended --------------------------------------------------------------------
    def brought_up(self) -> EndpointState:
        """Its variants serve as the record has them. Creating (or a restart) ends InService; an
        update a restart interrupted goes on (Updating)."""
        if self.status in (EndpointStatus.CREATING, EndpointStatus.IN_SERVICE):
            return dataclasses.replace(self, status=EndpointStatus.IN_SERVICE, failure_reason=None)
        return self

    def bring_up_failed(self, reason: str) -> EndpointState:
        if self.status in (EndpointStatus.CREATING, EndpointStatus.IN_SERVICE, EndpointStatus.UPDATING):
            return dataclasses.replace(
                self, status=EndpointStatus.FAILED, failure_reason=reason, updating_to=None
            )
        return self

    def updated(self, config: EndpointConfigSpec) -> EndpointState:
        """The new config serves (the previous one's model servers are retired)."""
        if self.status != EndpointStatus.UPDATING:
            return self
        return EndpointState(EndpointStatus.IN_SERVICE, config.name, config.variants)

    def update_failed(self, reason: str) -> EndpointState:
        """The new config's model servers did not come up: the previous config keeps serving."""
        if self.status != EndpointStatus.UPDATING:
            return self
        return dataclasses.replace(
            self,
            status=EndpointStatus.IN_SERVICE,
            updating_to=None,
            failure_reason=f"Updating failed, kept the previous config: {reason}",
        )

    def scaled(self) -> EndpointState:
        if self.status != EndpointStatus.UPDATING:
            return self
        return dataclasses.replace(self, status=EndpointStatus.IN_SERVICE, failure_reason=None)

    def scale_failed(self, reason: str) -> EndpointState:
        """Instances could not be added: those that serve keep serving."""
        if self.status != EndpointStatus.UPDATING:
            return self
        return dataclasses.replace(
            self, status=EndpointStatus.IN_SERVICE, failure_reason=f"Scaling failed: {reason}"
        )
