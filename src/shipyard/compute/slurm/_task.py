"""What runs in one task of a Shipyard Slurm job: one instance (``algo-<SLURM_PROCID + 1>``).

``python -m shipyard.compute.slurm._task``, started by ``srun`` from the job's batch script, on
each node of the allocation. The launch (every instance's ``agent.json`` as the server wrote
it, and where things go on the node) comes in ``$SHIPYARD_SLURM_LAUNCH`` (base64 JSON), which
is removed before the agent starts. The task makes the config the node's own — MASTER_ADDR is
the first allocated node's address, MASTER_PORT derived from the Slurm job id, so every task
knows them without talking — and runs the same instance agent as the local backend, in a
folder of the node's own. SIGTERM (``scancel --signal=TERM <job>.0``) goes to the agent, which
stops the job gracefully.

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
import time
from pathlib import Path
from typing import Any

from shipyard.compute._base import agent_env
from shipyard.compute.slurm._layout import EXITED, LAUNCH_VARIABLE, RELAYED, instance_dir, master_port
from shipyard.runtime._sandbox import sandbox_available
from shipyard.runtime.contract import AgentConfig, InstanceFolder


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
    launch: dict[str, Any] = json.loads(base64.b64decode(os.environ.pop(LAUNCH_VARIABLE)))
    index = int(os.environ["SLURM_PROCID"])
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
    agent: subprocess.Popen[bytes] | None = None
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
        with (folder / "agent.log").open("ab") as output:
            agent = subprocess.Popen(
                [sys.executable, "-m", "shipyard.runtime.agent", str(folder)],
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                env=agent_env(),
                close_fds=True,
            )
        started = agent

        def forward(signum: int, frame: object) -> None:
            with contextlib.suppress(ProcessLookupError):
                started.send_signal(signum)

        signal.signal(signal.SIGTERM, forward)
        signal.signal(signal.SIGINT, forward)
        agent.wait()
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
