"""Names the server, the tasks and the relay agree on: where an instance lives on its node, the
markers of its end, the files the server keeps copies of, the launch's variable."""

from __future__ import annotations

from pathlib import Path

LAUNCH_VARIABLE = "SHIPYARD_SLURM_LAUNCH"
EXITED, RELAYED = "exited", "relayed"
# Files the server keeps a copy of; status.json is sent whole, these from an offset.
STREAMS = ("log.jsonl", "utilization.jsonl", "agent.log")


def instance_dir(root: Path, key: str, host: str) -> Path:
    """An instance's folder on its node."""
    return root / "instances" / key / host


def master_port(job_id: str) -> int:
    """The rendezvous port of a Slurm job, the same in every task (a free port could not be
    agreed on without talking)."""
    return 20_000 + int(job_id.split("_")[0]) % 30_000
