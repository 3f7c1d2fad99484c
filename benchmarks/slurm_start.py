"""Job start and finish on the Slurm backend, against ``sbatch --wait`` of the same script.

    .venv/bin/python benchmarks/slurm_start.py [--runs 10]

Starts the tests' Slurm cluster (``compute/slurm/_testing.py``: slurmctld and two slurmds on this
machine; needs root and ``scripts/setup-slurm``), then runs a trivial script (it prints the
wall-clock time when it starts and when it ends) ``--runs`` times each way:

* Shipyard: a server with ``--backend slurm``; start is CreateTrainingJob sent → the script's first
  line, finish the script's last line → DescribeTrainingJob answers Completed (the model
  uploaded).
* ``sbatch --wait`` (the baseline): the same script as the batch script (its ``#!`` this Python),
  with the resources Shipyard asks for the instance; start is sbatch run → the script's first
  line, finish its last line → ``sbatch --wait`` returns.
* ``sbatch`` then ``squeue`` every 10 ms until COMPLETED: finish without sbatch's own wait, whose
  poll interval is its own.

Every run starts once the cluster's nodes are all idle (a node that ran the last job is briefly
"completing": a job submitted then waits up to the scheduler's next pass, which made starts
vary from 0.1 to 3 s in steps of a second). The first job of each kind is not counted
(Shipyard's builds the job's environment). Medians;
the goal is Shipyard ≤ 1.2 x the ``sbatch --wait`` figure + 150 ms, start and finish each.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from training_overhead import SCRIPT, Jobs, _stamps

from shipyard.compute.slurm._testing import SlurmCluster, slurm_missing
from shipyard.server import ServerProcess

Runs = dict[str, list[float]]  # start, finish: seconds each run


def settled(cluster: SlurmCluster) -> None:
    """Until every node is idle: the last job's node may still be completing (its epilog; Slurm
    takes it back within a second or so), and a job submitted meanwhile waits for the scheduler's
    next pass after that. Each run starts from an idle cluster, whichever way it is submitted."""
    deadline = time.monotonic() + 60
    while cluster.idle() != set(cluster.names):
        if time.monotonic() > deadline:
            raise SystemExit(f"the test cluster's nodes are not idle: {cluster.idle()} of {cluster.names}")
        time.sleep(0.05)


def bare(cluster: SlurmCluster, script: Path, runs: int, *, wait: bool, memory_mib: int) -> Runs:
    """``runs`` batch jobs of ``script``, after one not counted."""
    out: Runs = {"start": [], "finish": []}
    for i in range(runs + 1):
        output = script.parent / f"bare-{'wait' if wait else 'poll'}-{i}.out"
        args = [
            "sbatch",
            "--parsable",
            "--nodes=1",
            "--ntasks=1",
            "--ntasks-per-node=1",
            "--cpus-per-task=1",
            f"--mem={memory_mib}M",
            f"--output={output}",
            f"--chdir={script.parent}",
            *(["--wait"] if wait else []),
            str(script),
        ]
        settled(cluster)
        t0 = time.time()
        done = subprocess.run(args, capture_output=True, text=True, env=cluster.env, check=True, timeout=300)
        if not wait:
            job_id = done.stdout.strip().split(";")[0]
            while (
                cluster.run("squeue", "-h", "-t", "all", "-j", job_id, "-o", "%T").stdout.strip()
                != "COMPLETED"
            ):
                time.sleep(0.01)
        t_done = time.time()
        start, end = _stamps(output.read_text().splitlines())
        if i:
            out["start"].append(start - t0)
            out["finish"].append(t_done - end)
    return out


def on_slurm(cluster: SlurmCluster, folder: Path, runs: int) -> Runs:
    env = {
        "SLURM_CONF": str(cluster.conf),
        "SHIPYARD_SLURM_DIR": str(folder / "nodes"),
        "SHIPYARD_SLURM_ENVS_DIR": str(folder / "envs"),
    }
    out: Runs = {"start": [], "finish": []}
    with ServerProcess(folder / "data", extra_args=["--backend", "slurm"], env=env).start(
        timeout=300
    ) as server:
        jobs = Jobs(server)
        jobs.run("trivial")  # builds the job's environment on the node: not counted
        for _ in range(runs):
            settled(cluster)
            start, _, finish = jobs.run("trivial")
            out["start"].append(start)
            out["finish"].append(finish)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    if (why := slurm_missing()) is not None:
        raise SystemExit(f"benchmarks/slurm_start.py: {why}")
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp)
        script = folder / "train.py"
        script.write_text(f"#!{sys.executable}\n{SCRIPT}")
        script.chmod(0o755)
        with SlurmCluster(folder / "slurm", nodes=2, cpus=1, memory_gib=3) as cluster:
            memory_mib = cluster.memory_mib  # what Shipyard asks for ml.m5.large scaled to a node
            shipyard = on_slurm(cluster, folder, args.runs)
            waited = bare(cluster, script, args.runs, wait=True, memory_mib=memory_mib)
            polled = bare(cluster, script, args.runs, wait=False, memory_mib=memory_mib)
    med = statistics.median
    print(f"{'':8} {'sbatch --wait':>14} {'sbatch+squeue':>14} {'shipyard':>10} {'ratio':>6} {'goal':>9}")
    summary: dict[str, dict[str, float]] = {}
    for phase in ("start", "finish"):
        w, p, s = med(waited[phase]), med(polled[phase]), med(shipyard[phase])
        goal = 1.2 * w + 0.150
        summary[phase] = {
            "sbatch_wait_ms": round(w * 1000, 1),
            "sbatch_squeue_ms": round(p * 1000, 1),
            "shipyard_ms": round(s * 1000, 1),
            "goal_ms": round(goal * 1000, 1),
        }
        verdict = "met" if s <= goal else "missed"
        print(
            f"{phase:8} {w * 1000:11.1f} ms {p * 1000:11.1f} ms {s * 1000:7.1f} ms {s / w:6.2f} "
            f"{goal * 1000:6.0f} ms {verdict}"
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    main()
