"""Utilization of a process tree, read from /proc: what a job instance or a model server uses.

Reported as SageMaker reports its instances' utilization: ``cpu`` is the sum over cores (100 is
one core busy, 400 four), ``memory`` and ``disk`` are percentages of what the instance type
gives. Standard library only: it runs in the instance agent.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path

_TICKS = os.sysconf("SC_CLK_TCK")
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _stat(pid: str) -> tuple[int, float, int] | None:
    """(parent pid, CPU seconds of it and its reaped children, resident bytes)."""
    try:
        text = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = text[text.rfind(")") + 2 :].split()  # the name may hold spaces and parentheses
    ppid = int(fields[1])
    cpu = sum(int(f) for f in fields[11:15]) / _TICKS  # utime, stime, cutime, cstime
    return ppid, cpu, int(fields[21]) * _PAGE


def tree(root: int) -> tuple[float, int]:
    """CPU seconds and resident bytes of ``root`` and everything under it: walked down from
    ``root`` through each thread's ``children`` file, reading only those processes (not every
    process on the machine: a few hundred files a sample on a busy one); by a scan of ``/proc``
    where the kernel has no such files."""
    if not _HAS_CHILDREN:
        return _tree_by_scan(root)
    cpu, rss, todo, seen = 0.0, 0, [root], set()
    while todo:
        pid = todo.pop()
        if pid in seen:
            continue
        seen.add(pid)
        found = _stat(str(pid))
        if found is None:  # ended meanwhile: so did what it had not reaped
            continue
        cpu += found[1]
        rss += found[2]
        todo += _children(pid)
    return cpu, rss


def _children(pid: int) -> list[int]:
    """The processes whose parent is one of ``pid``'s threads."""
    try:
        threads = os.listdir(f"/proc/{pid}/task")
    except OSError:
        return []
    found = []
    for thread in threads:
        with contextlib.suppress(OSError, ValueError):
            found += [int(c) for c in Path(f"/proc/{pid}/task/{thread}/children").read_text().split()]
    return found


_HAS_CHILDREN = Path(f"/proc/self/task/{os.getpid()}/children").exists()  # CONFIG_PROC_CHILDREN


def _tree_by_scan(root: int) -> tuple[float, int]:
    stats = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            found = _stat(entry)
            if found is not None:
                stats[int(entry)] = found
    children: dict[int, list[int]] = {}
    for pid, (ppid, _, _) in stats.items():
        children.setdefault(ppid, []).append(pid)
    cpu, rss, todo = 0.0, 0, [root]
    while todo:
        pid = todo.pop()
        if pid in stats:
            cpu += stats[pid][1]
            rss += stats[pid][2]
        todo += children.get(pid, [])
    return cpu, rss


def disk_bytes(folder: Path) -> int:
    total = 0
    for path, _, files in os.walk(folder):
        for name in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(path, name)).st_blocks * 512
    return total


class Sampler:
    """Samples a process tree: each :meth:`sample` after the first gives the use since the last.

    Args:
        memory_bytes / disk_bytes: What the instance type gives (the percentages' 100).
        folder: Whose size is the disk in use (None: disk is not reported).
        gpus: Reads the instance's GPUs now: (% busy, % of memory in use), averaged over them
            (:func:`nvml_reader`); None: no GPU, not reported.
    """

    def __init__(
        self,
        root: int,
        *,
        memory_bytes: float,
        disk_bytes: float,
        folder: Path | None = None,
        gpus: Callable[[], tuple[float, float] | None] | None = None,
    ) -> None:
        self.root = root
        self._gpus = gpus
        self._memory = memory_bytes
        self._disk = disk_bytes
        self._folder = folder
        self._last: tuple[float, float] | None = None

    def sample(self, *, peak: bool = False) -> dict[str, object] | None:
        """The use since the last sample (None for the first). ``peak``: memory is the largest
        a reaped child reached, if more than what runs now (for work that has ended)."""
        cpu, rss = tree(self.root)
        if peak:
            rss = max(rss, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024)
        now = time.monotonic()
        last, self._last = self._last, (now, cpu)
        if last is None or now <= last[0]:
            return None
        point: dict[str, object] = {
            "t": dt.datetime.now(dt.UTC).isoformat(),
            "cpu": round(max(0.0, cpu - last[1]) / (now - last[0]) * 100, 2),
            "memory": round(rss / self._memory * 100, 2),
            "memory_bytes": rss,
        }
        if self._folder is not None:
            point["disk"] = round(disk_bytes(self._folder) / self._disk * 100, 3)
        gpus = self._gpus() if self._gpus is not None else None
        if gpus is not None:
            point["gpu"], point["gpu_memory"] = round(gpus[0], 2), round(gpus[1], 2)
        return point


def nvml_reader(uuids: Sequence[str]) -> Callable[[], tuple[float, float] | None] | None:
    """A reader of the GPUs ``uuids`` through NVML (SageMaker's GPUUtilization and
    GPUMemoryUtilization, averaged over them), or None where NVML cannot read them (not
    installed, no driver, a fake device list's GPUs)."""
    if not uuids:
        return None
    try:
        import pynvml  # nvidia-ml-py, the gpu extra

        pynvml.nvmlInit()
        handles = [pynvml.nvmlDeviceGetHandleByUUID(u) for u in uuids]
    except Exception:  # no NVML, or GPUs it does not know
        return None

    def read() -> tuple[float, float] | None:
        try:
            busy = [float(pynvml.nvmlDeviceGetUtilizationRates(h).gpu) for h in handles]
            memory = [pynvml.nvmlDeviceGetMemoryInfo(h) for h in handles]
        except Exception:
            return None
        return sum(busy) / len(busy), sum(m.used / m.total * 100 for m in memory) / len(memory)

    return read
