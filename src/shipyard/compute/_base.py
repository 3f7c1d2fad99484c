"""The compute backend interface: where job instances run.

A backend reports its capacity, launches an instance agent for one instance of a job, signals
it, and says whether it still runs. Placement decisions (what fits, what waits) are made by the
scheduler from capacity with pure functions in core/placement.py; the backend only executes them.

Contract: methods may be called from the scheduler thread and from request threads at once.
Handles are plain JSON-able dicts so that they survive in the store across server restarts.
"""

from __future__ import annotations

import abc
import dataclasses
import enum
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from shipyard.core.placement import Resources


class Feature(enum.StrEnum):
    GPU = "gpu"
    SANDBOX = "sandbox"


@dataclasses.dataclass(frozen=True)
class InstanceLaunch:
    """What one instance agent needs: its folder, and the agent.json to write there."""

    instance_dir: Path
    agent_config: Mapping[str, Any]


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

    def launch(self, launch: InstanceLaunch) -> dict[str, Any]:
        """Write the agent's config and start it; returns a handle to keep in the store."""
        launch.instance_dir.mkdir(parents=True, exist_ok=True)
        import json

        (launch.instance_dir / "agent.json").write_text(json.dumps(dict(launch.agent_config)))
        return self._launch(launch)

    @abc.abstractmethod
    def _launch(self, launch: InstanceLaunch) -> dict[str, Any]: ...

    @abc.abstractmethod
    def rendezvous(self) -> tuple[str, int]:
        """Address and a free port where algo-1 of a multi-instance job can be reached by the others
        (MASTER_ADDR / MASTER_PORT)."""

    @abc.abstractmethod
    def signal(self, handle: Mapping[str, Any], signum: int) -> None:
        """Send a signal to the agent (SIGTERM asks it to stop the job gracefully)."""

    @abc.abstractmethod
    def is_alive(self, handle: Mapping[str, Any]) -> bool:
        """Whether the agent process still runs."""

    def on_change(self, callback: Callable[[], None]) -> None:
        """Have ``callback`` called whenever an instance may have changed state (its agent ended),
        so that the scheduler looks at once rather than at its next poll. The default tells nothing:
        the scheduler's polling alone is correct, only slower."""
        return

    def close(self) -> None:
        """Release what the backend holds for itself. Running agents are left running."""
        return

    def kill(self, handle: Mapping[str, Any], instance_dir: Path) -> None:
        """End an instance at once: its agent and whatever it was running."""
        import signal

        self.signal(handle, signal.SIGKILL)
