"""The instance agent: runs one instance of a job, detached from the server.

    python -m shipyard.runtime.agent <instance dir>
    python -m shipyard.runtime.agent --fork-server    (instance dirs on stdin; see serve_forks)

The instance dir holds ``agent.json`` (:class:`~shipyard.runtime.contract.AgentConfig`, written
by the backend). The agent lays out ``ml/`` as SageMaker's /opt/ml, fetches inputs and code from
the object store, runs the work (in a bubblewrap sandbox with ``ml/`` at /opt/ml when bubblewrap
works), and writes ``log.jsonl`` and ``status.json`` as it goes (see ``runtime/contract.py``).

One file per role:

* ``_agent.py`` — :class:`Agent`, the life of an instance, and :class:`Layout`, what a kind does;
* ``_training.py``, ``_processing.py``, ``_transform.py`` — the layouts of the three kinds;
* ``_inputs.py`` — objects into the folder; ``_sync.py`` — folders mirrored to the store;
* ``_io.py`` — the log, the status file, the store; ``_processes.py`` — signals and groups;
* ``_forks.py`` — the local backend's fork server.
"""

from __future__ import annotations

import sys
from pathlib import Path

from shipyard.runtime.agent._agent import Agent, Layout
from shipyard.runtime.agent._inputs import relative_key
from shipyard.runtime.agent._io import JobInputError, LogWriter, open_store
from shipyard.runtime.agent._processing import ProcessingLayout
from shipyard.runtime.agent._sync import FolderSync
from shipyard.runtime.agent._training import TrainingLayout
from shipyard.runtime.agent._transform import TransformLayout

__all__ = [
    "LAYOUTS",
    "Agent",
    "FolderSync",
    "JobInputError",
    "Layout",
    "LogWriter",
    "ProcessingLayout",
    "TrainingLayout",
    "TransformLayout",
    "main",
    "make_agent",
    "open_store",
    "relative_key",
]

LAYOUTS: dict[str, type[Layout]] = {
    layout.kind: layout for layout in (TrainingLayout, ProcessingLayout, TransformLayout)
}


def make_agent(instance_dir: Path) -> Agent:
    """The agent of the instance in ``instance_dir``, with the layout its agent.json's kind names."""
    return Agent(instance_dir, LAYOUTS)


def run_agent(instance_dir: Path) -> int:
    return make_agent(instance_dir).run()


def main(argv: list[str] | None = None) -> int:
    from shipyard.runtime.agent._forks import serve_forks

    args = sys.argv[1:] if argv is None else argv
    if args == ["--fork-server"]:
        return serve_forks(run_agent)
    if len(args) != 1:
        sys.stderr.write("usage: python -m shipyard.runtime.agent <instance dir> | --fork-server\n")
        return 2
    return run_agent(Path(args[0]))
