"""A compute backend whose instances do what a test says."""

from __future__ import annotations

import json
import signal
import threading
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shipyard.compute._base import Backend, Feature, InstanceLaunch, write_agent_config
from shipyard.core.clock import SYSTEM_CLOCK, Clock
from shipyard.core.placement import Resources
from shipyard.runtime.contract import AgentConfig, AgentStatus, InstanceFolder, Outcome, Phase


class FakeInstance:
    """One launched instance: its folder and config, and what the test makes it report.

    Each method writes what a real agent would write to its folder (``status.json``,
    ``log.jsonl``, ``utilization.jsonl``), at the backend's clock's time.
    """

    def __init__(
        self, backend: FakeBackend, launch: InstanceLaunch, config: AgentConfig, handle: dict[str, Any]
    ) -> None:
        self._backend = backend
        self.folder = InstanceFolder(launch.instance_dir)
        self.config = config
        self.resources = launch.resources
        self.handle = handle
        self.alive = True
        self.placed = True
        self.lost_reason: str | None = None
        self.preempted = False
        self.signals: list[int] = []
        self.status = AgentStatus.unreported()

    @property
    def host(self) -> str:
        return self.config.host

    def _now(self) -> str:
        return self._backend.clock.now().isoformat()

    def _write(self, **changes: Any) -> FakeInstance:
        self.status = self.status.replace(reported=True, **changes)
        self.folder.write_status(self.status)
        return self

    def start(self) -> FakeInstance:
        """The agent began its work (the billed interval opens)."""
        return self._write(agent_pid=0, started=self._now())

    def phase(self, name: str) -> FakeInstance:
        """The agent entered ``name`` (Downloading, Training, Uploading)."""
        if not self.status.started:
            self.start()
        extra = {"training_start": self._now()} if name == "Training" else {}
        return self._write(phases=(*self.status.phases, Phase(name, self._now())), **extra)

    def log(self, *lines: str) -> FakeInstance:
        """The user's process printed ``lines``."""
        millis = int(self._backend.clock.now().timestamp() * 1000)
        self.folder.path.mkdir(parents=True, exist_ok=True)
        with self.folder.log.open("a") as f:
            for line in lines:
                f.write(json.dumps({"t": millis, "m": line}) + "\n")
        return self

    def sample(self, cpu: float, memory: float, memory_bytes: int = 0) -> FakeInstance:
        """A utilization sample, as the agent's sampler writes it."""
        with self.folder.utilization.open("a") as f:
            point = {"t": self._now(), "cpu": cpu, "memory": memory, "memory_bytes": memory_bytes}
            f.write(json.dumps(point) + "\n")
        return self

    def end(
        self,
        outcome: Outcome = Outcome.COMPLETED,
        *,
        exit_code: int | None = 0,
        failure_reason: str | None = None,
        artifacts: Mapping[str, str] | None = None,
    ) -> FakeInstance:
        """The agent reported its outcome and exited."""
        if not self.status.started:
            self.start()
        self._write(
            outcome=outcome,
            exit_code=exit_code,
            failure_reason=failure_reason,
            training_end=self._now(),
            **dict(artifacts or {}),
        )
        self.alive = False
        self._backend.changed()
        return self

    def die(self, lost: str | None = None, *, preempted: bool = False) -> FakeInstance:
        """The agent ended without reporting an outcome (``lost``: what the backend knows of why;
        ``preempted``: the cluster preempted it)."""
        self.alive = False
        self.lost_reason = lost
        self.preempted = preempted
        self._backend.changed()
        return self


class FakeBackend(Backend):
    """A backend with scripted capacity whose instances are :class:`FakeInstance` objects.

    ``launch`` writes each instance's ``agent.json`` as a real backend does and starts nothing;
    the test then drives the instances (:meth:`instances`). A SIGTERM is recorded, and, with
    ``stop_on_sigterm``, answered as a real agent does: the instance reports Stopped.

    Args:
        capacity: What it can give to jobs at once.
        name: The backend's name (jobs record it).
        available: Whether it can launch now (False: jobs wait, as for a cluster out of reach).
        stop_on_sigterm: Whether instances end Stopped when signalled.
        clock: The time instances report.
    """

    def __init__(
        self,
        capacity: Resources = Resources(8, 32, 0),
        *,
        name: str = "local",
        available: bool = True,
        stop_on_sigterm: bool = True,
        clock: Clock = SYSTEM_CLOCK,
    ) -> None:
        self.name = name
        self._capacity = capacity
        self.is_available = available
        self.stop_on_sigterm = stop_on_sigterm
        self.clock = clock
        self.sandbox = "off"
        self.launched: list[list[FakeInstance]] = []  # one list per launch, algo-1 first
        self.demanded: list[Resources] = []
        self._by_id: dict[int, FakeInstance] = {}
        self._callbacks: list[Callable[[], None]] = []
        self._lock = threading.Lock()

    # -- what a test sets and reads ------------------------------------------------------------
    def set_capacity(self, capacity: Resources) -> None:
        self._capacity = capacity

    def instances(self, job: str | None = None) -> list[FakeInstance]:
        """The instances of the last launch (of ``job``'s, named by its folder)."""
        for group in reversed(self.launched):
            if job is None or job in group[0].folder.path.parts:
                return group
        raise LookupError(f"no instances launched{f' for {job!r}' if job else ''}")

    def changed(self) -> None:
        for callback in self._callbacks:
            callback()

    # -- Backend ----------------------------------------------------------------------------------
    @property
    def capacity(self) -> Resources:
        return self._capacity

    @property
    def available(self) -> bool:
        return self.is_available

    @property
    def unsupported(self) -> Mapping[Feature, str]:
        return {Feature.GPU: "no GPU on this fake"} if self._capacity.gpus == 0 else {}

    def launch(self, launches: Sequence[InstanceLaunch]) -> list[dict[str, Any]]:
        group = []
        for launch in launches:
            config = write_agent_config(launch, master_addr="127.0.0.1", master_port=29500)
            with self._lock:
                handle = {"fake": len(self._by_id)}
                instance = FakeInstance(self, launch, config, handle)
                self._by_id[handle["fake"]] = instance
            group.append(instance)
        self.launched.append(group)
        return [i.handle for i in group]

    def _instance(self, handle: Mapping[str, Any]) -> FakeInstance:
        return self._by_id[int(handle["fake"])]

    def signal(self, handle: Mapping[str, Any], signum: int) -> None:
        instance = self._instance(handle)
        instance.signals.append(signum)
        if signum == signal.SIGKILL:
            instance.alive = False
        elif signum == signal.SIGTERM and self.stop_on_sigterm and instance.alive:
            instance.end(Outcome.STOPPED, exit_code=None)

    def is_alive(self, handle: Mapping[str, Any]) -> bool:
        return self._instance(handle).alive

    def placed(self, handle: Mapping[str, Any]) -> bool:
        return self._instance(handle).placed

    def lost(self, handle: Mapping[str, Any]) -> str | None:
        return self._instance(handle).lost_reason

    def preempted(self, handle: Mapping[str, Any]) -> bool:
        return self._instance(handle).preempted

    def kill(self, handle: Mapping[str, Any], instance_dir: Path) -> None:
        self.signal(handle, signal.SIGKILL)

    def demand(self, waiting: Sequence[Resources]) -> None:
        self.demanded = list(waiting)

    def on_change(self, callback: Callable[[], None]) -> None:
        self._callbacks.append(callback)
