"""Placing job instances on a backend's capacity: pure decisions, no I/O."""

from __future__ import annotations

import dataclasses

from shipyard.core.catalog import InstanceType
from shipyard.errors import ValidationError


@dataclasses.dataclass(frozen=True)
class Resources:
    cpus: float
    memory_gib: float
    gpus: int = 0

    def __add__(self, other: Resources) -> Resources:
        return Resources(self.cpus + other.cpus, self.memory_gib + other.memory_gib, self.gpus + other.gpus)

    def __sub__(self, other: Resources) -> Resources:
        return Resources(self.cpus - other.cpus, self.memory_gib - other.memory_gib, self.gpus - other.gpus)

    def __mul__(self, count: int) -> Resources:
        return Resources(self.cpus * count, self.memory_gib * count, self.gpus * count)

    def fits_in(self, capacity: Resources) -> bool:
        eps = 1e-9
        return (
            self.cpus <= capacity.cpus + eps
            and self.memory_gib <= capacity.memory_gib + eps
            and self.gpus <= capacity.gpus
        )


@dataclasses.dataclass(frozen=True)
class Placement:
    """What each instance of a job gets, and whether that is less than its type promises."""

    per_instance: Resources
    count: int
    scaled_down: str | None = None

    @property
    def total(self) -> Resources:
        return self.per_instance * self.count


def plan(
    instance_type: InstanceType,
    count: int,
    capacity: Resources,
    *,
    node: Resources | None = None,
    fit_to_machine: bool,
    gpu_memory_gib: float | None = None,
) -> Placement:
    """Decide each instance's resources on a backend of total ``capacity`` whose largest machine
    is ``node`` (the whole capacity when None), and whose largest GPU has ``gpu_memory_gib``
    (None: not known, not checked). A type's GPUs must each have the memory it promises.

    A request that fits is granted as asked. One that could never fit fails, unless
    ``fit_to_machine`` lets it run with an equal share of the whole backend (and no more than one
    machine), which is recorded. A backend with no machine at the moment (a cluster that adds
    them on demand) grants the request as asked: it waits until a machine comes.

    Raises:
        ValidationError: the request can never be placed.
    """
    asked = Resources(float(instance_type.vcpu), float(instance_type.memory_gib), instance_type.gpu_count)
    node = node or capacity
    small_gpus = (
        asked.gpus > 0
        and gpu_memory_gib is not None
        and gpu_memory_gib + 1e-9 < instance_type.gpu_memory_gib
        and min(asked.gpus * count, capacity.gpus) > 0
    )
    if (asked * count).fits_in(capacity) and asked.fits_in(node) and not small_gpus:
        return Placement(asked, count)
    if fit_to_machine and node.cpus <= 0:  # no machine yet (a cluster scaled to zero): wait for one
        return Placement(asked, count)
    if small_gpus and (asked * count).fits_in(capacity) and asked.fits_in(node) and not fit_to_machine:
        raise ValidationError(
            f"{instance_type.name} has GPUs of {instance_type.gpu_memory_gib:g} GiB "
            f"({instance_type.gpu_model or 'its model'}); this backend's largest GPU has "
            f"{gpu_memory_gib:g} GiB, so it could never run. Choose a type whose GPUs fit, map "
            f"{instance_type.name} to this site's GPUs in the instance catalog, or enable fit-to-machine.",
            field="ResourceConfig.InstanceType",
            value=instance_type.name,
        )
    if not fit_to_machine:
        raise ValidationError(
            f"{count} x {instance_type.name} needs {asked.cpus * count:g} vCPUs, {asked.memory_gib * count:g} GiB "
            f"and {asked.gpus * count} GPUs; this backend has {capacity.cpus:g} vCPUs, {capacity.memory_gib:g} GiB "
            f"and {capacity.gpus} GPUs in all, so it could never run. Choose a smaller type or count, or "
            "enable fit-to-machine.",
            field="ResourceConfig.InstanceType",
            value=instance_type.name,
        )
    share = Resources(
        min(asked.cpus, capacity.cpus / count, node.cpus),
        min(asked.memory_gib, capacity.memory_gib / count, node.memory_gib),
        min(asked.gpus, capacity.gpus // count, node.gpus),
    )
    note = (
        f"scaled down to fit this machine: each of {count} x {instance_type.name} runs with "
        f"{share.cpus:g} of {asked.cpus:g} vCPUs, {share.memory_gib:.1f} of {asked.memory_gib:g} GiB"
        + (f" and {share.gpus} of {asked.gpus} GPUs" if asked.gpus else "")
        + (
            f" (GPUs of {gpu_memory_gib:g} of {instance_type.gpu_memory_gib:g} GiB)"
            if small_gpus and share.gpus and gpu_memory_gib is not None
            else ""
        )
    )
    return Placement(share, count, note)


def parallel_note(placement: Placement, instance_type: str, parallel: int, capacity: Resources) -> str | None:
    """Why fewer than ``parallel`` trials (each ``placement``) run at once on ``capacity``, or
    None when that many fit. Said on a tuning job, so that a small machine explains itself."""
    need = placement.total
    fits = [capacity.cpus / need.cpus if need.cpus else parallel]
    fits.append(capacity.memory_gib / need.memory_gib if need.memory_gib else parallel)
    if need.gpus:
        fits.append(capacity.gpus / need.gpus)
    at_once = max(1, int(min(fits) + 1e-9))
    if at_once >= parallel:
        return None
    return (
        f"{at_once} of the {parallel} parallel trials run at once: each is {placement.count} x {instance_type} "
        f"({need.cpus:g} vCPUs, {need.memory_gib:g} GiB) and this machine has {capacity.cpus:g} vCPUs and "
        f"{capacity.memory_gib:g} GiB; the others wait their turn (a site may overcommit vCPUs: cpu_overcommit)"
    )


@dataclasses.dataclass(frozen=True)
class Fit:
    """Whether one instance of a type runs on a backend: ``as_is`` (all it promises), ``scaled``
    (with less, fit-to-machine's share: ``note`` says what), or ``no`` (``note`` says why)."""

    verdict: str
    note: str | None = None

    def to_dict(self) -> dict[str, str | None]:
        return {"runs_here": self.verdict, "here_note": self.note}


def fit_here(
    instance_type: InstanceType,
    capacity: Resources,
    *,
    node: Resources | None = None,
    fit_to_machine: bool,
    gpu_memory_gib: float | None = None,
) -> Fit:
    """How one instance of ``instance_type`` would run on a backend (as :func:`plan` decides):
    what ``shipyard instance-types`` shows for this machine."""
    try:
        plan(instance_type, 1, capacity, node=node, fit_to_machine=False, gpu_memory_gib=gpu_memory_gib)
        return Fit("as_is")
    except ValidationError as exc:
        if not fit_to_machine:
            return Fit("no", exc.message)
    placement = plan(
        instance_type, 1, capacity, node=node, fit_to_machine=True, gpu_memory_gib=gpu_memory_gib
    )
    if instance_type.gpu_count and not placement.per_instance.gpus:
        return Fit("scaled", f"runs without a GPU ({placement.scaled_down})")
    return Fit("scaled", placement.scaled_down)
