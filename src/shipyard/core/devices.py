"""GPUs: the devices a machine has, which of them the server may use, and which each instance is
granted. Pure decisions, no I/O (discovery is ``compute/local/_gpus.py``).

A job instance (or a model server) granted GPUs sees exactly those: the sandbox binds their device
nodes and no others, and its environment names them the same way everywhere
(:func:`visible_environment`): ``CUDA_VISIBLE_DEVICES`` and ``NVIDIA_VISIBLE_DEVICES`` list their
UUIDs (which mean the same device whatever order CUDA enumerates the bound nodes in), and
``SM_NUM_GPUS`` and ``resourceconfig.json`` count them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Collection, Mapping, Sequence
from pathlib import PurePosixPath
from typing import Any

from shipyard.errors import ValidationError

# The driver's control nodes a CUDA process opens besides its GPUs' own, when the machine has them.
CONTROL_NODES = ("/dev/nvidiactl", "/dev/nvidia-uvm", "/dev/nvidia-uvm-tools")


@dataclasses.dataclass(frozen=True)
class Gpu:
    """One GPU of a machine.

    Attributes:
        index: Its index on the machine (NVML's, as ``nvidia-smi`` shows it).
        uuid: ``GPU-…``, the same in NVML, CUDA and ``nvidia-smi``.
        name: The model (``NVIDIA A10G``).
        memory_mib: Its memory.
        node: Its device node on the host (``/dev/nvidia<minor>``); a sandbox shows it under the
            same name in its own /dev.
    """

    index: int
    uuid: str
    name: str
    memory_mib: int
    node: str

    @property
    def memory_gib(self) -> float:
        return self.memory_mib / 1024

    @property
    def sandbox_node(self) -> str:
        """Where the instance sees its node: ``/dev/`` and the node's own name."""
        return f"/dev/{PurePosixPath(self.node).name}"

    def to_json(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data: Mapping[str, Any], *, where: str = "gpu") -> Gpu:
        """A GPU from its JSON form.

        Raises:
            ValidationError: a field is missing or of the wrong type (named, with ``where``).
        """
        if not isinstance(data, Mapping):
            raise ValidationError(f"{where} must be an object, got {data!r}", field=where, value=str(data))
        values: dict[str, Any] = {}
        for name, kind in (("index", int), ("uuid", str), ("name", str), ("memory_mib", int)):
            value = data.get(name)
            if not isinstance(value, kind) or isinstance(value, bool):
                raise ValidationError(
                    f"{where}.{name} must be {'an integer' if kind is int else 'a string'}, got {value!r}",
                    field=f"{where}.{name}",
                    value=str(value),
                )
            values[name] = value
        node = data.get("node", f"/dev/nvidia{values['index']}")
        if not isinstance(node, str) or not node.startswith("/"):
            raise ValidationError(
                f"{where}.node must be an absolute path, got {node!r}", field=f"{where}.node", value=str(node)
            )
        return cls(node=node, **values)


@dataclasses.dataclass(frozen=True)
class GpuInventory:
    """The GPUs the server may hand out, the control nodes present, and where the list came from
    (``nvml``, ``fake device list <path>``, or ``none``) for the server's log.

    A fake device list (a testing setting) is the JSON form, ``{"gpus": [{"index": 0, "uuid":
    "GPU-…", "name": "NVIDIA A10G", "memory_mib": 24576, "node": "/tmp/…/nvidia0"}, …],
    "control": ["/tmp/…/nvidiactl", …]}``.
    """

    gpus: tuple[Gpu, ...] = ()
    control: tuple[str, ...] = ()
    source: str = "none"

    def __post_init__(self) -> None:
        for field, values in (
            ("index", [str(g.index) for g in self.gpus]),
            ("uuid", [g.uuid for g in self.gpus]),
        ):
            dupes = sorted({v for v in values if values.count(v) > 1})
            if dupes:
                raise ValidationError(
                    f"two GPUs have the same {field} {dupes[0]}", field=f"gpus.{field}", value=dupes[0]
                )

    def __len__(self) -> int:
        return len(self.gpus)

    @property
    def largest_memory_gib(self) -> float:
        return max((g.memory_gib for g in self.gpus), default=0.0)

    def by_index(self, indexes: Collection[int]) -> tuple[Gpu, ...]:
        return tuple(g for g in self.gpus if g.index in indexes)

    def describe(self) -> str:
        """``2 GPUs (nvml): 0 NVIDIA A10G 24 GiB GPU-…, …`` or ``no GPU (…)``, for the log."""
        if not self.gpus:
            return f"no GPU ({self.source})"
        listed = ", ".join(f"{g.index} {g.name} {g.memory_gib:g} GiB {g.uuid}" for g in self.gpus)
        return f"{len(self.gpus)} GPU{'s' if len(self.gpus) != 1 else ''} ({self.source}): {listed}"

    def to_json(self) -> dict[str, Any]:
        return {
            "gpus": [g.to_json() for g in self.gpus],
            "control": list(self.control),
            "source": self.source,
        }

    @classmethod
    def from_json(cls, data: Any, *, source: str) -> GpuInventory:
        """A device list in the JSON form (see the class docstring).

        Raises:
            ValidationError: naming the entry and field that is wrong.
        """
        if not isinstance(data, Mapping) or not isinstance(data.get("gpus", []), list):
            raise ValidationError(
                f"a device list is an object with a list 'gpus', got {str(data)[:80]!r}",
                field="gpus",
                value=str(data)[:80],
            )
        control = data.get("control", [])
        if not isinstance(control, list) or not all(
            isinstance(c, str) and c.startswith("/") for c in control
        ):
            raise ValidationError(
                f"control must be a list of absolute paths, got {control!r}",
                field="control",
                value=str(control),
            )
        gpus = tuple(Gpu.from_json(g, where=f"gpus[{i}]") for i, g in enumerate(data.get("gpus", [])))
        return cls(gpus, tuple(control), source)


def visible(gpus: Sequence[Gpu], spec: str | None) -> tuple[tuple[Gpu, ...], list[str]]:
    """The GPUs ``CUDA_VISIBLE_DEVICES`` (``spec``, as given to the server) leaves it, in its
    order, and the entries that named no GPU here (for the log). None: all of them. Entries are
    indexes or UUIDs (a unique prefix, as CUDA takes them); as in CUDA, the list ends at ``-1``."""
    if spec is None:
        return tuple(gpus), []
    chosen: list[Gpu] = []
    unknown: list[str] = []
    for raw in spec.split(","):
        entry = raw.strip()
        if not entry:
            continue
        if entry == "-1":
            break
        if entry.lstrip("-").isdigit():
            matches = [g for g in gpus if g.index == int(entry)]
        else:
            matches = [
                g for g in gpus if g.uuid.startswith(entry) or g.uuid.removeprefix("GPU-").startswith(entry)
            ]
        if len(matches) == 1 and matches[0] not in chosen:
            chosen.append(matches[0])
        elif not matches or len(matches) > 1:
            unknown.append(entry)
    return tuple(chosen), unknown


class GpusBusy(Exception):
    """No set of free GPUs satisfies a grant right now (others hold them); it waits."""


def grant(
    free: Sequence[Gpu], per_instance: int, count: int = 1, *, min_memory_gib: float = 0.0
) -> tuple[tuple[Gpu, ...], ...]:
    """Which of the ``free`` GPUs each of ``count`` instances gets, ``per_instance`` each: the
    lowest indexes with at least ``min_memory_gib`` first (then smaller ones, which a placement
    scaled down to fit the machine allows), no GPU to two instances.

    Raises:
        GpusBusy: fewer than ``per_instance * count`` are free.
    """
    if per_instance <= 0:
        return tuple(() for _ in range(count))
    eps = 1e-9
    order = sorted(free, key=lambda g: (g.memory_gib + eps < min_memory_gib, g.index))
    wanted = per_instance * count
    if len(order) < wanted:
        held = "none is" if not order else f"only {len(order)} {'is' if len(order) == 1 else 'are'}"
        raise GpusBusy(f"Waiting for {wanted} GPU{'s' if wanted != 1 else ''}: {held} free")
    return tuple(tuple(order[i * per_instance : (i + 1) * per_instance]) for i in range(count))


def visible_environment(gpus: Sequence[Gpu]) -> dict[str, str]:
    """What a process granted ``gpus`` is told: the same devices in CUDA's and the NVIDIA
    container toolkit's terms, by UUID (none granted: none visible)."""
    uuids = ",".join(g.uuid for g in gpus)
    return {"CUDA_VISIBLE_DEVICES": uuids, "NVIDIA_VISIBLE_DEVICES": uuids or "void"}
