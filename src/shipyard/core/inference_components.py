"""Inference components: several models on one endpoint, each with its own copies and resources.

An endpoint whose production variants name no model (``ModelName`` left out) is capacity: its
instances run nothing until inference components are placed on them. A component names the
endpoint and variant, what to serve (a model, or a container: image, artifact, environment),
the resources one copy of it needs (CPU cores, accelerators, memory) and how many copies to run
(``RuntimeConfig.CopyCount``). This module holds the decisions, pure: what a request says
(:class:`ComponentSpec`), where copies go on the instances (:func:`place`), which copy answers a
request (:func:`choose_copy`), and a component's life (:class:`ComponentState`).
"""

from __future__ import annotations

import dataclasses
import enum
import math
from collections.abc import Mapping, Sequence
from typing import Any

from shipyard.core.hosting import ContainerSpec
from shipyard.errors import ValidationError

KIND = "inference-component"  # the resource kind in the store and in ARNs


class ComponentStatus(enum.StrEnum):
    CREATING = "Creating"
    UPDATING = "Updating"
    IN_SERVICE = "InService"
    FAILED = "Failed"
    DELETING = "Deleting"


def _unsupported(field: str, what: str) -> ValidationError:
    return ValidationError(f"{field} ({what}) is not supported by Shipyard yet", field=field)


@dataclasses.dataclass(frozen=True)
class Need:
    """What one copy reserves on an instance: CPU cores, accelerators and memory (its minimum;
    ``max_memory_mb`` is the most it may use, where the model servers can hold it to that)."""

    cpus: float = 0.0
    accelerators: float = 0.0
    memory_mb: int = 0
    max_memory_mb: int | None = None

    def __add__(self, other: Need) -> Need:
        return Need(
            self.cpus + other.cpus, self.accelerators + other.accelerators, self.memory_mb + other.memory_mb
        )

    def describe(self) -> str:
        parts = [f"{self.cpus:g} CPU cores", f"{self.memory_mb} MB of memory"]
        if self.accelerators:
            parts.insert(1, f"{self.accelerators:g} accelerators")
        return ", ".join(parts)

    @classmethod
    def from_request(cls, raw: Mapping[str, Any] | None, field: str) -> Need:
        if not raw:
            raise ValidationError(
                f"{field} is required: give at least MinMemoryRequiredInMb (and NumberOfCpuCoresRequired)",
                field=field,
            )
        if raw.get("AcceleratorPartitionType"):
            raise _unsupported(f"{field}.AcceleratorPartitionType", "accelerator partitions")
        memory = raw.get("MinMemoryRequiredInMb")
        if memory is None:
            raise ValidationError(
                f"{field}.MinMemoryRequiredInMb is required", field=f"{field}.MinMemoryRequiredInMb"
            )
        most = raw.get("MaxMemoryRequiredInMb")
        if most is not None and most < memory:
            raise ValidationError(
                f"{field}.MaxMemoryRequiredInMb ({most}) must not be less than MinMemoryRequiredInMb ({memory})",
                field=f"{field}.MaxMemoryRequiredInMb",
                value=most,
            )
        return cls(
            float(raw.get("NumberOfCpuCoresRequired") or 0.0),
            float(raw.get("NumberOfAcceleratorDevicesRequired") or 0.0),
            int(memory),
            None if most is None else int(most),
        )


@dataclasses.dataclass(frozen=True)
class ComponentSpec:
    """A component's ``Specification``: a model by name (``model``) or a container of its own,
    and what one copy needs."""

    need: Need
    model: str | None = None
    container: ContainerSpec | None = None
    startup_timeout: int | None = None  # ContainerStartupHealthCheckTimeoutInSeconds
    placement: str = "SPREAD"  # SchedulingConfig.PlacementStrategy

    @classmethod
    def from_request(cls, raw: Mapping[str, Any] | None, field: str = "Specification") -> ComponentSpec:
        if not raw:
            raise ValidationError(f"{field} is required", field=field)
        if raw.get("BaseInferenceComponentName"):
            raise _unsupported(f"{field}.BaseInferenceComponentName", "adapter components")
        model, container = raw.get("ModelName"), raw.get("Container")
        if bool(model) == bool(container):
            raise ValidationError(
                f"{field}: give either ModelName or Container (with Image), not "
                + ("both" if model else "neither"),
                field=f"{field}.ModelName",
            )
        spec_container = None
        if container:
            image = container.get("Image")
            if not image:
                raise ValidationError(
                    f"{field}.Container.Image is required", field=f"{field}.Container.Image"
                )
            spec_container = ContainerSpec(
                image, container.get("ArtifactUrl"), dict(container.get("Environment") or {})
            )
        startup = raw.get("StartupParameters") or {}
        scheduling = raw.get("SchedulingConfig") or {}
        return cls(
            Need.from_request(raw.get("ComputeResourceRequirements"), f"{field}.ComputeResourceRequirements"),
            model or None,
            spec_container,
            startup.get("ContainerStartupHealthCheckTimeoutInSeconds"),
            scheduling.get("PlacementStrategy") or "SPREAD",
        )


def copy_count(raw: Mapping[str, Any] | None, field: str = "RuntimeConfig") -> int:
    """``RuntimeConfig.CopyCount`` (botocore checks it is an integer of at least 0)."""
    if not raw or raw.get("CopyCount") is None:
        raise ValidationError(f"{field}.CopyCount is required", field=f"{field}.CopyCount")
    count = int(raw["CopyCount"])
    if count < 0:
        raise ValidationError(
            f"{field}.CopyCount must not be negative, got {count}", field=f"{field}.CopyCount", value=count
        )
    return count


# -- placement ---------------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class Capacity:
    """One instance of the variant: its id and what its type offers."""

    instance: str
    cpus: float
    memory_mb: int
    accelerators: float = 0.0


class InsufficientCapacity(ValidationError):
    """The copies asked for do not fit on the variant's instances (SageMaker's CapacityError)."""


def place(
    capacity: Sequence[Capacity],
    used: Mapping[str, Need],
    need: Need,
    copies: int,
    *,
    strategy: str = "SPREAD",
    component: str = "",
    already: Mapping[str, int] | None = None,
) -> list[str]:
    """The instance each of ``copies`` new copies goes on, given what ``used`` is reserved on
    each instance already (every component's copies). SPREAD (SageMaker's default) puts each on
    the instance with the fewest copies of this component (``already``), then the most memory
    free; BINPACK on the fullest instance it fits. All or none: InsufficientCapacity says what
    one copy needs and what each instance has free."""
    reserved = {c.instance: used.get(c.instance, Need()) for c in capacity}
    mine = dict(already or {})
    chosen: list[str] = []
    for _ in range(copies):
        fits = [c for c in capacity if _fits(c, reserved[c.instance], need)]
        if not fits:
            free = "; ".join(
                f"{c.instance} has {c.cpus - reserved[c.instance].cpus:g} CPU cores and "
                f"{c.memory_mb - reserved[c.instance].memory_mb} MB free"
                for c in capacity
            )
            raise InsufficientCapacity(
                f"CapacityError: the endpoint's instances have no room for copy {len(chosen) + 1} of "
                f"{copies} of inference component {component!r} (each copy needs {need.describe()}): "
                f"{free or 'the variant has no instances'}. Ask for fewer copies or smaller "
                "ComputeResourceRequirements, or give the endpoint more instances",
                field="RuntimeConfig.CopyCount",
                value=copies,
            )

        def free_memory(c: Capacity) -> int:
            return c.memory_mb - reserved[c.instance].memory_mb

        if strategy == "BINPACK":
            best = min(fits, key=free_memory)
        else:
            best = min(fits, key=lambda c: (mine.get(c.instance, 0), -free_memory(c)))
        chosen.append(best.instance)
        reserved[best.instance] = reserved[best.instance] + need
        mine[best.instance] = mine.get(best.instance, 0) + 1
    return chosen


def _fits(instance: Capacity, reserved: Need, need: Need) -> bool:
    return (
        reserved.cpus + need.cpus <= instance.cpus + 1e-9
        and reserved.memory_mb + need.memory_mb <= instance.memory_mb
        and reserved.accelerators + need.accelerators <= instance.accelerators + 1e-9
    )


# -- routing -------------------------------------------------------------------------------------
def choose_copy(in_flight: Sequence[int], turn: int, strategy: str = "LEAST_OUTSTANDING_REQUESTS") -> int:
    """The index of the copy a request goes to. LEAST_OUTSTANDING_REQUESTS: a copy with the
    fewest requests in flight, ties broken in turn (so idle copies share requests round-robin);
    RANDOM (SageMaker's other RoutingStrategy): ``turn`` is the caller's random draw."""
    count = len(in_flight)
    if count == 0:
        raise ValueError("no copy to choose from")
    if strategy == "RANDOM":
        return turn % count
    least = min(in_flight)
    order = [(turn + i) % count for i in range(count)]
    return next(i for i in order if in_flight[i] == least)


# -- a component's life -------------------------------------------------------------------------------
@dataclasses.dataclass(frozen=True)
class ComponentState:
    """Where a component stands: its status, the Specification it serves (``version`` counts its
    changes, so copies of an older one are known), the copies wanted, and while an update of the
    Specification is under way the one it replaces (kept if the update fails).

    Transitions an API call asks for raise ValidationError when the component cannot take them;
    those that report how an operation ended are no-ops where they do not apply."""

    status: ComponentStatus
    specification: Mapping[str, Any]
    copies: int
    version: int = 1
    previous: Mapping[str, Any] | None = None  # {"specification", "version"} while updating
    failure_reason: str | None = None

    @classmethod
    def new(cls, specification: Mapping[str, Any], copies: int) -> ComponentState:
        return cls(ComponentStatus.CREATING, dict(specification), copies)

    @classmethod
    def from_record(cls, status: str | None, state: Mapping[str, Any]) -> ComponentState:
        return cls(
            ComponentStatus(status or ComponentStatus.CREATING),
            state["specification"],
            int(state["copies"]),
            int(state.get("version", 1)),
            state.get("previous"),
            state.get("failure_reason"),
        )

    def to_record(self) -> dict[str, Any]:
        return {
            "specification": dict(self.specification),
            "copies": self.copies,
            "version": self.version,
            "previous": None if self.previous is None else dict(self.previous),
            "failure_reason": self.failure_reason,
        }

    @property
    def spec(self) -> ComponentSpec:
        return ComponentSpec.from_request(self.specification)

    # -- asked for -------------------------------------------------------------------------------
    def update(
        self, name: str, specification: Mapping[str, Any] | None, copies: int | None
    ) -> ComponentState:
        """UpdateInferenceComponent / UpdateInferenceComponentRuntimeConfig: a new Specification
        (its copies start beside the old ones, which stop once they serve) and/or copy count."""
        if self.status not in (ComponentStatus.IN_SERVICE, ComponentStatus.FAILED):
            raise ValidationError(
                f"Cannot update inference component {name!r} while it is {self.status}; "
                "wait until it is InService",
                field="InferenceComponentName",
                value=name,
            )
        changed = dataclasses.replace(
            self,
            status=ComponentStatus.UPDATING,
            copies=self.copies if copies is None else copies,
            failure_reason=None,
        )
        if specification is not None and dict(specification) != dict(self.specification):
            changed = dataclasses.replace(
                changed,
                specification=dict(specification),
                version=self.version + 1,
                previous={"specification": dict(self.specification), "version": self.version},
            )
        return changed

    def delete(self) -> ComponentState:
        return dataclasses.replace(self, status=ComponentStatus.DELETING)

    # -- how an operation ended --------------------------------------------------------------------
    def served(self) -> ComponentState:
        """Its copies of the current Specification run as wanted."""
        if self.status in (ComponentStatus.CREATING, ComponentStatus.UPDATING):
            return dataclasses.replace(
                self, status=ComponentStatus.IN_SERVICE, previous=None, failure_reason=None
            )
        return self

    def start_failed(self, reason: str, *, running: int) -> ComponentState:
        """Copies could not be placed or started. Creating: Failed. An update of the
        Specification: the previous one keeps serving. A change of the copy count (or copies
        brought back after a restart): the ``running`` copies keep serving, and are what is
        wanted now (so it is not tried again and again)."""
        if self.status == ComponentStatus.CREATING:
            return dataclasses.replace(self, status=ComponentStatus.FAILED, failure_reason=reason)
        if self.status == ComponentStatus.UPDATING and self.previous is not None:
            return dataclasses.replace(
                self,
                status=ComponentStatus.IN_SERVICE,
                specification=self.previous["specification"],
                version=int(self.previous["version"]),
                previous=None,
                failure_reason=f"Updating failed, kept the previous specification: {reason}",
            )
        if self.status in (ComponentStatus.UPDATING, ComponentStatus.IN_SERVICE):
            return dataclasses.replace(
                self,
                status=ComponentStatus.IN_SERVICE,
                copies=running,
                failure_reason=f"Scaling to more copies failed, {running} serve: {reason}",
            )
        return self

    def endpoint_lost(self, reason: str) -> ComponentState:
        """Its endpoint failed or went away: nothing it could run on."""
        if self.status == ComponentStatus.DELETING:
            return self
        return dataclasses.replace(self, status=ComponentStatus.FAILED, failure_reason=reason)


# -- autoscaling of copies -------------------------------------------------------------------------
def desired_copies(
    copies: int, invocations: int, window: float, target: Mapping[str, Any], now: float
) -> tuple[int, str]:
    """The copy count a scalable target's target-tracking policies ask for, and why: invocations
    per copy and minute over the last ``window`` seconds (SageMakerInferenceComponentInvocationsPerCopy)
    against each policy's TargetValue, within MinCapacity..MaxCapacity, honouring cooldowns,
    DisableScaleIn and suspended scaling. At 0 copies a request that came counts as one copy's."""
    suspended = target.get("suspended") or {}
    low, high = int(target["min"]), int(target["max"])
    if copies < low or copies > high:
        return max(low, min(high, copies)), f"the copy count {copies} is outside {low}..{high}"
    rate = invocations / max(copies, 1) * 60.0 / window
    last = float(target.get("last_scaled", 0))
    for policy in target["policies"].values():
        config = policy["config"]
        wanted = max(low, min(high, math.ceil(max(copies, 1) * rate / float(config["TargetValue"]))))
        if copies == 0 and invocations == 0:
            wanted = max(low, 0)
        out = wanted > copies and not suspended.get("DynamicScalingOutSuspended")
        scale_in = (
            wanted < copies
            and not config.get("DisableScaleIn")
            and not suspended.get("DynamicScalingInSuspended")
        )
        cooldown = float(config.get("ScaleOutCooldown" if out else "ScaleInCooldown", 300))
        if (out or scale_in) and now - last >= cooldown:
            side = "above" if out else "below"
            return wanted, f"InvocationsPerCopy {rate:.1f} is {side} the target {config['TargetValue']:g}"
    return copies, ""
