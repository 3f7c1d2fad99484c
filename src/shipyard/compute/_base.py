"""The compute backend interface: where job instances run.

A backend reports its capacity, launches the instance agents of a job, signals them, and says
whether they still run. Placement decisions (what fits, what waits) are made by the
scheduler from capacity with pure functions in core/placement.py; the backend only executes them.

Contract: methods may be called from the scheduler thread and from request threads at once.
Handles are plain JSON-able dicts so that they survive in the store across server restarts.
"""

from __future__ import annotations

import abc
import dataclasses
import datetime as dt
import enum
import os
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from shipyard.core.devices import Gpu
from shipyard.core.placement import Resources
from shipyard.runtime.contract import AgentConfig, InstanceFolder


class Feature(enum.StrEnum):
    GPU = "gpu"
    SANDBOX = "sandbox"


@dataclasses.dataclass(frozen=True)
class InstanceLaunch:
    """What one instance agent needs: its folder, the agent.json to write there, and what it is
    granted of its instance type (``gpu_memory_gib``: the memory each of its GPUs should have,
    preferred when the backend picks devices)."""

    instance_dir: Path
    agent_config: AgentConfig
    instance_type: str
    resources: Resources
    gpu_memory_gib: float = 0.0


@dataclasses.dataclass(frozen=True)
class ClusterBill:
    """What a cluster's own accounting billed one job attempt (Slurm's sacct): its allocation
    from ``started`` to ``ended``, each instance a node ``allocated`` so much."""

    kind: str
    job: str
    attempt: int
    started: dt.datetime
    ended: dt.datetime
    allocated: Resources
    source: str = ""  # where the figures came from (AllocTRES, NCPUS)


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


def agent_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k in _AGENT_ENV or k.startswith(_AGENT_ENV_PREFIXES)}


def write_agent_config(launch: InstanceLaunch, **changes: Any) -> AgentConfig:
    """Write ``agent.json`` (the launch's config with ``changes``) into the instance folder;
    returns what was written."""
    config = launch.agent_config.replace(**changes)
    InstanceFolder(launch.instance_dir).write_config(config)
    return config


class Backend(abc.ABC):
    """Runs instance agents. See the module docstring for the contract."""

    name: str = "abstract"

    @property
    @abc.abstractmethod
    def capacity(self) -> Resources:
        """Everything this backend can give to jobs at once."""

    @property
    def unsupported(self) -> Mapping[Feature, str]:
        """Features this backend lacks, with the reason shown to users."""
        return {}

    @property
    def available(self) -> bool:
        """Whether it can launch now (a cluster may be out of reach for a while: jobs wait)."""
        return True

    @property
    def reserved(self) -> Resources:
        """What of :attr:`capacity` is held by other than jobs (GPUs granted to model servers),
        which the scheduler does not count itself. The default: nothing."""
        return Resources(0, 0, 0)

    @property
    def largest_gpu_memory_gib(self) -> float | None:
        """The memory of its largest GPU, where it knows (None: it does not, or has none)."""
        return None

    @property
    def devices(self) -> tuple[Gpu, ...]:
        """The GPUs it hands out one by one, where it knows them (the local backend's)."""
        return ()

    @property
    def largest_node(self) -> Resources:
        """The most one instance can get (a backend of several machines: the largest of them)."""
        return self.capacity

    def unrunnable(self, instance_type: str, granted: Resources) -> str | None:
        """Why one instance of ``instance_type``, granted ``granted``, could not run on any of
        its machines as the site has it asked for (a Slurm partition without a node that large),
        beyond what :attr:`capacity` says; None: it could. The default: nothing more to say."""
        return None

    @abc.abstractmethod
    def launch(self, launches: Sequence[InstanceLaunch]) -> list[dict[str, Any]]:
        """Start the agents of one job's instances (algo-1 first); returns a handle per instance to
        keep in the store.

        The backend writes each ``agent.json`` (:func:`write_agent_config`) and adds
        ``master_addr`` / ``master_port``: where algo-1 can be reached by the others, and the GPUs
        it granted each instance. A backend that places instances on several machines may start
        them later, once placed.

        Raises:
            GpusBusy: the GPUs asked for are held by others now (the job waits; nothing started).
        """

    @abc.abstractmethod
    def signal(self, handle: Mapping[str, Any], signum: int) -> None:
        """Send a signal to the agent (SIGTERM asks it to stop the job gracefully)."""

    @abc.abstractmethod
    def is_alive(self, handle: Mapping[str, Any]) -> bool:
        """Whether the agent process still runs."""

    def placed(self, handle: Mapping[str, Any]) -> bool:
        """Whether the instance has a machine yet (a backend of several may have it wait)."""
        return True

    def waiting_reason(self, handle: Mapping[str, Any]) -> str | None:
        """Why an instance that is not placed yet waits, in the cluster's words (a Slurm job's
        pending reason), for the job's Pending message; None: no reason to show."""
        return None

    def lost(self, handle: Mapping[str, Any]) -> str | None:
        """Why an instance that is no longer alive was lost, when the backend knows better than
        "its agent exited" (e.g. the machine it ran on died)."""
        return None

    def preempted(self, handle: Mapping[str, Any]) -> bool:
        """Whether a lost instance was preempted by its cluster (Slurm's PREEMPTED), so that its
        job starts again from its checkpoint rather than failing or spending a retry."""
        return False

    def demand(self, waiting: Sequence[Resources]) -> None:
        """The instances that wait for capacity (one entry each), so that a backend that can grow
        asks for them. The default cannot grow."""
        return

    def on_change(self, callback: Callable[[], None]) -> None:
        """Have ``callback`` called whenever an instance may have changed state (its agent ended),
        so that the scheduler looks at once rather than at its next poll. The default tells nothing:
        the scheduler's polling alone is correct, only slower."""
        return

    def on_billed(self, callback: Callable[[ClusterBill], None]) -> None:
        """Have ``callback`` told what the cluster billed each job attempt once it knows (after
        the attempt ended there). The default bills nothing: the ledger's own time stands."""
        return

    def close(self) -> None:
        """Release what the backend holds for itself. Running agents are left running."""
        return

    def kill(self, handle: Mapping[str, Any], instance_dir: Path) -> None:
        """End an instance at once: its agent and whatever it was running."""
        import signal

        self.signal(handle, signal.SIGKILL)
