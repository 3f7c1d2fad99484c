"""What runs in one task of a Shipyard Slurm job: one instance (``algo-<SLURM_PROCID + 1>``).

``python -m shipyard.compute.slurm._task``, started by ``srun`` from the job's batch script, on
each node of the allocation. The launch (every instance's ``agent.json`` as the server wrote
it, and where things go on the node) comes in ``$SHIPYARD_SLURM_LAUNCH`` (base64 JSON), which
is removed before the agent starts. The task makes the config the node's own — MASTER_ADDR is
the first allocated node's address, MASTER_PORT derived from the Slurm job id, so every task
knows them without talking — and runs the same instance agent as the local backend, in a
folder of the node's own, forked from this process once it has imported what the agent imports
(in a thread, while it asks Slurm where algo-1 is: a job starts a second sooner than with an
interpreter of its own on a loaded node). SIGTERM (the relay's) goes to the agent, which stops
the job gracefully.

When the agent has exited, the task writes ``exited`` and waits (up to ``handoff_seconds``) for
the server's relay step (``_relay.py``) to have sent everything the agent wrote (``relayed``),
then removes the folder: while the server is away, the node's files are the buffer.

Imported on the nodes: it needs Shipyard installed there, and nothing from the server.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from shipyard.compute.slurm._layout import EXITED, LAUNCH_VARIABLE, RELAYED, instance_dir, master_port
from shipyard.runtime._sandbox import sandbox_available
from shipyard.runtime.contract import AgentConfig, InstanceFolder


def _import_agent() -> None:
    """What the agent imports (boto3 the most: it reaches the object store over S3), imported
    while the task asks Slurm where algo-1 is; the agent is then forked from this process
    rather than started as an interpreter of its own that imports it all again."""
    import boto3  # noqa: F401
    import botocore.config  # noqa: F401

    import shipyard.runtime.agent  # noqa: F401


def _first_node_address() -> str:
    """The address of the allocation's first node (algo-1's), as Slurm knows it."""
    nodes = subprocess.run(
        ["scontrol", "show", "hostnames", os.environ["SLURM_JOB_NODELIST"]],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    shown = subprocess.run(
        ["scontrol", "show", "node", "-o", nodes[0]], capture_output=True, text=True, check=True
    ).stdout
    for field in shown.split():
        if field.startswith("NodeAddr="):
            return field.split("=", 1)[1]
    return nodes[0]


def _log(folder: Path, message: str) -> None:
    with (folder / "log.jsonl").open("a") as log:
        log.write(json.dumps({"t": int(time.time() * 1000), "m": message}) + "\n")


def main() -> int:
    importing = threading.Thread(target=_import_agent, name="imports", daemon=True)
    importing.start()
    launch: dict[str, Any] = json.loads(base64.b64decode(os.environ.pop(LAUNCH_VARIABLE)))
    index = int(os.environ.get("SLURM_PROCID", "0"))  # a job of one instance: the batch step
    job_id = os.environ["SLURM_JOB_ID"]
    root = Path(launch["root"])
    config = AgentConfig.from_json(launch["instances"][index])
    folder = instance_dir(root, launch["key"], config.host)
    folder.mkdir(parents=True, exist_ok=True)
    for marker in (EXITED, RELAYED):  # a requeued job starts again in the same folder
        with contextlib.suppress(FileNotFoundError):
            (folder / marker).unlink()
    node = os.environ.get("SLURMD_NODENAME", "?")
    _log(folder, f"Shipyard: on Slurm node {node} (Slurm job {job_id})")
    try:
        sandbox = config.sandbox
        if sandbox == "bwrap" and not sandbox_available():
            raise RuntimeError(
                "the server requires the bubblewrap sandbox (sandbox = 'bwrap'), which Slurm node "
                f"{node} lacks: install bubblewrap on it"
            )
        config = config.replace(
            master_addr=_first_node_address(),
            master_port=master_port(job_id),
            python=sys.executable,
            envs_dir=str(launch.get("envs") or root / "envs"),
            sandbox="bwrap" if sandbox != "off" and sandbox_available() else "off",
            hide=(*config.hide, str(root / "instances")),
            die_with_parent=True,
        )
        InstanceFolder(folder).write_config(config)
        importing.join()
        from shipyard.compute._base import agent_env
        from shipyard.runtime.agent import run_agent
        from shipyard.runtime.agent._forks import _fork_agent

        env = agent_env()  # what the agent sees of the environment, as on the local backend

        def run(instance: Path) -> int:
            os.environ.clear()
            os.environ.update(env)
            return run_agent(instance)

        pid = _fork_agent(folder, run, close=())

        def forward(signum: int, frame: object) -> None:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        os.waitpid(pid, 0)
    except Exception as exc:  # said where the server reads it: the instance's agent.log
        with (folder / "agent.log").open("a") as log:
            log.write(f"Shipyard's Slurm task could not start the agent: {exc}\n")
    finally:
        (folder / EXITED).touch()
    deadline = time.monotonic() + float(launch.get("handoff_seconds", 600))
    while not (folder / RELAYED).exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    shutil.rmtree(folder, ignore_errors=True)
    for parent in (folder.parent, folder.parent.parent):  # the attempt's and the job's, once empty
        with contextlib.suppress(OSError):
            parent.rmdir()
    return 0


if __name__ == "__main__":
    sys.exit(main())
