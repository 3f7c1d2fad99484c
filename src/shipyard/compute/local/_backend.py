"""The local backend: instance agents as processes on this machine."""

from __future__ import annotations

import contextlib
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
from shipyard.core.placement import Resources
from shipyard.runtime._sandbox import sandbox_available
from shipyard.runtime.contract import InstanceFolder

log = logging.getLogger(__name__)


def machine_resources() -> Resources:
    """Cores, memory and GPUs of this machine (what the process may use)."""
    try:
        cpus = len(os.sched_getaffinity(0))
    except AttributeError:  # not Linux
        cpus = os.cpu_count() or 1
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    return Resources(float(cpus), round(memory, 1), _gpu_count())


def _gpu_count() -> int:
    visible = os.environ.get("CUDA_VISIBLE_DEVICES")
    if visible is not None:
        return len([d for d in visible.split(",") if d.strip()])
    return len(list(Path("/dev").glob("nvidia[0-9]*")))


class LocalBackend(Backend):
    """Agents as detached processes (their own session), so they outlive a server restart.

    A new interpreter importing the agent costs ~100 ms of CPU, most of a short job's start-up and,
    for a tuning job's trivial trials on a small machine, most of its work. So agents are forked
    from a fork server (``python -m shipyard.runtime.agent --fork-server``) started once and
    already imported; it also reports each agent's exit, which wakes the scheduler at once. Should
    the fork server be gone or fail, an agent is started as a process of its own.

    Args:
        capacity: Resources to hand out; defaults to the whole machine.
        sandbox: "auto" (bubblewrap when it works here), "bwrap" (required) or "off".
    """

    name = "local"

    def __init__(self, capacity: Resources | None = None, sandbox: str = "auto") -> None:
        self._capacity = capacity or machine_resources()
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

    def launch(self, launches: Sequence[InstanceLaunch]) -> list[dict[str, Any]]:
        master_port = _free_port()
        handles = []
        for launch in launches:
            write_agent_config(launch, master_addr="127.0.0.1", master_port=master_port)
            handles.append(self._start(launch.instance_dir))
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
