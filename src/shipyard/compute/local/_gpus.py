"""This machine's GPUs, and which of them are held: discovery (NVML, or a fake device list for
tests) and the local backend's ledger of grants.

Discovery asks NVML (``nvidia-ml-py``, the ``gpu`` extra, imported only here and only when asked)
for each GPU's index, UUID, model, memory and minor number (its ``/dev/nvidia<minor>``); no NVML
(not installed, no driver, no GPU) means no GPU, said in one line of the server's log.
``CUDA_VISIBLE_DEVICES`` given to the server limits what it hands out (:func:`core.devices.visible`).
A fake device list (the ``fake_gpus`` setting, for tests only) replaces NVML: its nodes may be plain
files, which the sandbox binds as it would the real ones.
"""

from __future__ import annotations

import json
import logging
import os
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from shipyard.core.devices import CONTROL_NODES, Gpu, GpuInventory, GpusBusy, grant, visible
from shipyard.errors import ConfigurationError, ValidationError

log = logging.getLogger(__name__)

MODEL_SERVER_HOLDER = "model-server:"  # a model server's grant: its holder key starts so


def discover(fake: Path | None = None, environ: Mapping[str, str] | None = None) -> GpuInventory:
    """The GPUs this server may use: the fake device list at ``fake`` (tests), else NVML's,
    limited by ``CUDA_VISIBLE_DEVICES``; logs what it found (or why none).

    Raises:
        ConfigurationError: the fake device list cannot be read or is malformed (naming the field).
    """
    environ = os.environ if environ is None else environ
    inventory = read_fake(fake) if fake is not None else _from_nvml()
    gpus, unknown = visible(inventory.gpus, environ.get("CUDA_VISIBLE_DEVICES"))
    if unknown:
        log.warning(
            "CUDA_VISIBLE_DEVICES=%s names %s, which %s no GPU here; ignored",
            environ.get("CUDA_VISIBLE_DEVICES"),
            ", ".join(unknown),
            "is" if len(unknown) == 1 else "are",
        )
    if len(gpus) != len(inventory.gpus):
        inventory = GpuInventory(
            gpus,
            inventory.control,
            f"{inventory.source}, CUDA_VISIBLE_DEVICES={environ['CUDA_VISIBLE_DEVICES']}",
        )
    log.info("GPUs: %s", inventory.describe())
    return inventory


def read_fake(path: Path) -> GpuInventory:
    """A fake device list (the JSON form of :class:`GpuInventory`), for tests."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigurationError(f"fake_gpus: cannot read the device list {str(path)!r}: {exc}") from None
    try:
        return GpuInventory.from_json(data, source=f"fake device list {path}")
    except ValidationError as exc:
        raise ConfigurationError(f"fake_gpus {str(path)!r}: {exc.message}") from None


def _from_nvml() -> GpuInventory:
    try:
        import pynvml  # nvidia-ml-py
    except ImportError:
        if any(Path("/dev").glob("nvidia[0-9]*")):
            return GpuInventory(
                source="NVML is not installed though /dev has NVIDIA devices: pip install 'shipyard[gpu]'"
            )
        return GpuInventory(source="no NVIDIA device on this machine")
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as exc:
        return GpuInventory(source=f"NVML could not start: {exc}")
    try:
        gpus = []
        for index in range(pynvml.nvmlDeviceGetCount()):
            handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            uuid, name = pynvml.nvmlDeviceGetUUID(handle), pynvml.nvmlDeviceGetName(handle)
            gpus.append(
                Gpu(
                    index=index,
                    uuid=uuid.decode() if isinstance(uuid, bytes) else uuid,
                    name=name.decode() if isinstance(name, bytes) else name,
                    memory_mib=int(pynvml.nvmlDeviceGetMemoryInfo(handle).total // 2**20),
                    node=f"/dev/nvidia{pynvml.nvmlDeviceGetMinorNumber(handle)}",
                )
            )
    except pynvml.NVMLError as exc:
        return GpuInventory(source=f"NVML failed listing the GPUs: {exc}")
    finally:
        pynvml.nvmlShutdown()
    control = tuple(node for node in CONTROL_NODES if Path(node).exists())
    return GpuInventory(tuple(gpus), control, "nvml")


class GpuLedger:
    """Which of the machine's GPUs are held, and by whom (thread-safe).

    A holder is a key and a liveness check: a grant whose holder no longer runs is taken back the
    next time GPUs are granted, so a holder that ended without saying so (an agent that died)
    frees its GPUs all the same. What is held is also in each holder's own record (a job
    instance's handle in the store), from which a restarted server learns it again
    (:meth:`adopt`).
    """

    def __init__(self, inventory: GpuInventory) -> None:
        self.inventory = inventory
        self._held: dict[int, tuple[str, Callable[[], bool]]] = {}
        self._lock = threading.Lock()

    def take(
        self, holder: str, per_instance: int, count: int = 1, *, min_memory_gib: float = 0.0
    ) -> tuple[tuple[Gpu, ...], ...]:
        """Grant ``count`` instances ``per_instance`` GPUs each, held by ``holder`` until
        :meth:`hold` names its liveness check (held meanwhile) or :meth:`release`.

        Raises:
            GpusBusy: not enough of them are free.
        """
        with self._lock:
            self._prune()
            free = [g for g in self.inventory.gpus if g.index not in self._held]
            grants = grant(free, per_instance, count, min_memory_gib=min_memory_gib)
            for gpu in (g for granted in grants for g in granted):
                self._held[gpu.index] = (holder, lambda: True)
            return grants

    def hold(self, holder: str, indexes: Sequence[int], alive: Callable[[], bool]) -> None:
        """``holder`` holds ``indexes`` while ``alive()`` says it runs."""
        with self._lock:
            for index in indexes:
                self._held[index] = (holder, alive)

    def adopt(self, holder: str, indexes: Sequence[int], alive: Callable[[], bool]) -> None:
        """A holder found running (after a restart) holds its GPUs again, unless another took them."""
        with self._lock:
            for index in indexes:
                if index not in self._held or self._held[index][0] == holder:
                    self._held[index] = (holder, alive)

    def release(self, holder: str) -> None:
        with self._lock:
            for index in [i for i, (h, _) in self._held.items() if h == holder]:
                del self._held[index]

    def held(self) -> dict[int, str]:
        """GPU index → holder, of the grants still live."""
        with self._lock:
            self._prune()
            return {index: holder for index, (holder, _) in self._held.items()}

    def _prune(self) -> None:
        for index, (_, alive) in list(self._held.items()):
            if not _alive(alive):
                del self._held[index]


def _alive(check: Callable[[], bool]) -> bool:
    try:
        return check()
    except Exception:  # a check that fails (a vanished process) frees the GPU
        return False


__all__ = ["GpuLedger", "GpusBusy", "discover", "read_fake"]
