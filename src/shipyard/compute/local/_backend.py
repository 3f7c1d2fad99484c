"""The local backend: instance agents as processes on this machine."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from shipyard.compute._base import Backend, Feature, InstanceLaunch
from shipyard.core.placement import Resources
from shipyard.runtime._sandbox import sandbox_available

# The agent (not the user's job) needs what reaching package indexes takes: CA bundles, proxies,
# uv/pip settings.
_AGENT_ENV = (
    "PATH",
    "HOME",
    "LANG",
    "LC_ALL",
    "LC_CTYPE",
    "TZ",
    "VIRTUAL_ENV",
    "PYTHONPATH",
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "REQUESTS_CA_BUNDLE",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
)
_AGENT_ENV_PREFIXES = ("UV_", "PIP_")


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
        self._lock = threading.Lock()

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

    def _launch(self, launch: InstanceLaunch) -> dict[str, Any]:
        env = {k: v for k, v in os.environ.items() if k in _AGENT_ENV or k.startswith(_AGENT_ENV_PREFIXES)}
        with (launch.instance_dir / "agent.log").open("ab") as log:
            process = subprocess.Popen(
                [sys.executable, "-m", "shipyard.runtime.agent", str(launch.instance_dir)],
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                start_new_session=True,
                close_fds=True,
            )
        with self._lock:
            self._children[process.pid] = process
        return {"pid": process.pid, "start_ticks": _start_ticks(process.pid)}

    def rendezvous(self) -> tuple[str, int]:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return "127.0.0.1", int(s.getsockname()[1])

    def signal(self, handle: Mapping[str, Any], signum: int) -> None:
        if self.is_alive(handle):
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.kill(int(handle["pid"]), signum)

    def kill(self, handle: Mapping[str, Any], instance_dir: Path) -> None:
        super().kill(handle, instance_dir)
        # The user's process runs in a session of its own; without its agent it must not live on.
        try:
            pgid = int(json.loads((instance_dir / "status.json").read_text()).get("user_pgid") or 0)
        except (OSError, ValueError):
            pgid = 0
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
