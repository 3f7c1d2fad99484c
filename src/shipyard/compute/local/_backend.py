"""The local backend: instance agents as processes on this machine."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import logging
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shipyard.compute._base import Backend, Feature, InstanceLaunch, agent_env, write_agent_config
from shipyard.compute.local._gpus import MODEL_SERVER_HOLDER, GpuLedger
from shipyard.core.devices import Gpu, GpuInventory
from shipyard.core.placement import Resources
from shipyard.runtime._sandbox import sandbox_available
from shipyard.runtime.contract import InstanceFolder

log = logging.getLogger(__name__)


def machine_resources(gpus: GpuInventory | None = None) -> Resources:
    """Cores and memory of this machine (what the process may use), and ``gpus``' number."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return Resources(float(cpus), round(memory, 1), len(gpus) if gpus else 0)


class LocalBackend(Backend):
    """Agents as detached processes (their own session), so they outlive a server restart.

    A new interpreter importing the agent costs ~100 ms of CPU, most of a short job's start-up and,
    for a tuning job's trivial trials on a small machine, most of its work. So agents are forked
    from a fork server (``python -m shipyard.runtime.agent --fork-server``) started once and
    already imported; it also reports each agent's exit, which wakes the scheduler at once. Should
    the fork server be gone or fail, an agent is started as a process of its own.

    Each instance asking for GPUs is granted specific ones (:class:`GpuLedger`, shared with the
    model servers), written into its ``agent.json`` and its handle: a restarted server learns
    from the handles what running instances hold.

    Args:
        capacity: Resources to hand out; defaults to the whole machine (its GPU count is
            always that of ``gpus``).
        sandbox: "auto" (bubblewrap when it works here), "bwrap" (required) or "off".
        gpus: The GPUs it may hand out (:func:`discover`); none by default.
    """

    name = "local"

    def __init__(
        self, capacity: Resources | None = None, sandbox: str = "auto", gpus: GpuInventory | None = None
    ) -> None:
        self.gpus = GpuLedger(gpus or GpuInventory())
        self._capacity = dataclasses.replace(capacity or machine_resources(), gpus=len(self.gpus.inventory))
        if sandbox == "bwrap" and not sandbox_available():
            from shipyard.errors import ConfigurationError

            raise ConfigurationError(
                "sandbox is 'bwrap' but bubblewrap is not installed or cannot create namespaces here "
                "(apt-get install bubblewrap)"
            )
        self.sandbox = "bwrap" if sandbox != "off" and sandbox_available() else "off"
        self._children: dict[int, subprocess.Popen[bytes]] = {}
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()
        self._forks: _ForkServer | None = None
        self._closed = False

    @property
    def capacity(self) -> Resources:
        return self._capacity

    @property
    def unsupported(self) -> Mapping[Feature, str]:
        missing: dict[Feature, str] = {}
        if self._capacity.gpus == 0:
            missing[Feature.GPU] = "no GPU on this machine"
        if self.sandbox == "off":
            missing[Feature.SANDBOX] = "bubblewrap is not available: jobs run unsandboxed"
        return missing

    def on_change(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            forks, self._forks = self._forks, None
        if forks is not None:
            forks.close()

    def _changed(self) -> None:
        for callback in self._callbacks:
            callback()

    @property
    def reserved(self) -> Resources:
        held = sum(1 for holder in self.gpus.held().values() if holder.startswith(MODEL_SERVER_HOLDER))
        return Resources(0, 0, held)

    @property
    def devices(self) -> tuple[Gpu, ...]:
        return self.gpus.inventory.gpus

    @property
    def largest_gpu_memory_gib(self) -> float | None:
        return self.gpus.inventory.largest_memory_gib if len(self.gpus.inventory) else None

    def launch(self, launches: Sequence[InstanceLaunch]) -> list[dict[str, Any]]:
        master_port = _free_port()
        per_instance = max((launch.resources.gpus for launch in launches), default=0)
        holder = str(launches[0].instance_dir.parent) if launches else ""
        grants = self.gpus.take(
            holder,
            per_instance,
            len(launches),
            min_memory_gib=max((launch.gpu_memory_gib for launch in launches), default=0.0),
        )
        handles: list[dict[str, Any]] = []
        try:
            for launch, granted in zip(launches, grants, strict=True):
                notes = launch.agent_config.notes
                if granted:
                    notes += (
                        f"Shipyard: granted GPU{'s' if len(granted) > 1 else ''} "
                        + ", ".join(f"{g.index} ({g.name}, {g.memory_gib:g} GiB, {g.uuid})" for g in granted),
                    )
                    if self.sandbox == "off":
                        notes += (
                            "Shipyard: unsandboxed, the job could open every GPU of this machine; "
                            "CUDA_VISIBLE_DEVICES names its own",
                        )
                write_agent_config(
                    launch,
                    master_addr="127.0.0.1",
                    master_port=master_port,
                    gpus=len(granted) if per_instance else launch.agent_config.gpus,
                    gpu_devices=granted,
                    gpu_control=self.gpus.inventory.control if granted else (),
                    notes=notes,
                )
                handle = self._start(launch.instance_dir)
                if granted:
                    handle["gpus"] = [g.index for g in granted]
                    self.gpus.hold(
                        str(launch.instance_dir), handle["gpus"], functools.partial(self._running, handle)
                    )
                handles.append(handle)
        finally:
            self.gpus.release(holder)  # what was started holds its own; the rest is free again
        return handles

    def _start(self, instance_dir: Path) -> dict[str, Any]:
        pid = self._fork(instance_dir)
        if pid is None:
            with (instance_dir / "agent.log").open("ab") as output:
                process = subprocess.Popen(
                    [sys.executable, "-m", "shipyard.runtime.agent", str(instance_dir)],
                    stdin=subprocess.DEVNULL,
                    stdout=output,
                    stderr=subprocess.STDOUT,
                    env=agent_env(),
                    start_new_session=True,
                    close_fds=True,
                )
            pid = process.pid
            with self._lock:
                self._children[pid] = process
            threading.Thread(target=self._watch, args=(process,), name="shipyard-agent", daemon=True).start()
        return {"pid": pid, "start_ticks": _start_ticks(pid)}

    def _fork(self, instance_dir: Path) -> int | None:
        with self._lock:
            if self._closed:
                return None
            if self._forks is None or not self._forks.running:
                try:
                    self._forks = _ForkServer(self._changed)
                except OSError:
                    log.exception("The agent fork server could not start; starting agents one by one")
                    return None
            forks = self._forks
        try:
            return forks.launch(instance_dir)
        except OSError as exc:
            log.warning("The agent fork server failed (%s); starting the agent on its own", exc)
            return None

    def _watch(self, process: subprocess.Popen[bytes]) -> None:
        process.wait()
        self._changed()

    def signal(self, handle: Mapping[str, Any], signum: int) -> None:
        if self.is_alive(handle):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(handle["pid"]), signum)

    def kill(self, handle: Mapping[str, Any], instance_dir: Path) -> None:
        super().kill(handle, instance_dir)
        # The user's process runs in a session of its own; without its agent it must not live on.
        pgid = InstanceFolder(instance_dir).read_status().user_pgid or 0
        if pgid > 1:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pgid, signal.SIGKILL)

    def is_alive(self, handle: Mapping[str, Any]) -> bool:
        alive = self._running(handle)
        if alive and handle.get("gpus"):  # after a restart: its GPUs are held again
            self.gpus.adopt(f"pid {handle['pid']}", handle["gpus"], functools.partial(self._running, handle))
        return alive

    def _running(self, handle: Mapping[str, Any]) -> bool:
        pid = int(handle["pid"])
        with self._lock:
            child = self._children.get(pid)
        if child is not None:  # our own child: poll() also reaps it
            if child.poll() is None:
                return True
            with self._lock:
                self._children.pop(pid, None)
            return False
        # Launched by an earlier server process: the pid must still be the same process.
        recorded = handle.get("start_ticks")
        return recorded is not None and _start_ticks(pid) == recorded


class _ForkServer:
    """The fork server process and the thread reading its answers."""

    def __init__(self, on_exit: Callable[[], None]) -> None:
        self._process = subprocess.Popen(
            [sys.executable, "-m", "shipyard.runtime.agent", "--fork-server"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            env=agent_env(),
            start_new_session=True,  # a Ctrl-C meant for the server does not reach it
            close_fds=True,
        )
        self._on_exit = on_exit
        self._answers: queue.Queue[str] = queue.Queue()
        self._launching = threading.Lock()
        threading.Thread(target=self._read, name="shipyard-fork-server", daemon=True).start()

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def launch(self, instance_dir: Path) -> int:
        assert self._process.stdin is not None
        with self._launching:
            self._process.stdin.write(f"{instance_dir}\n".encode())
            self._process.stdin.flush()
            try:
                answer = self._answers.get(timeout=30)
            except queue.Empty:
                self._process.kill()  # a late answer must not be taken for the next launch's
                raise OSError("no answer in 30 s") from None
        kind, _, detail = answer.partition(" ")
        if kind != "launched":
            raise OSError(detail or "it exited")
        return int(detail)

    def _read(self) -> None:
        assert self._process.stdout is not None
        for raw in self._process.stdout:
            kind, _, detail = raw.decode().strip().partition(" ")
            if kind == "exited":
                self._on_exit()
            else:
                self._answers.put(f"{kind} {detail}")
        self._answers.put("gone")  # wakes a launch waiting on a fork server that died
        self._process.wait()

    def close(self) -> None:
        """End of input: the fork server exits; the agents it started run on."""
        with contextlib.suppress(OSError):
            self._process.stdin.close()  # type: ignore[union-attr]
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._process.wait(timeout=5)


def _free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_ticks(pid: int) -> int | None:
    """The process's start time in clock ticks since boot (tells a reused pid apart)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    fields = stat.rsplit(")", 1)[1].split()
    if fields[0] == "Z":
        return None
    return int(fields[19])
