"""Job start on the Ray backend: submit → user code starts, against ``ray job submit``.

    .venv/bin/python benchmarks/ray_start.py [--runs 10]

Starts a Ray cluster of a head and two worker nodes on this machine, then runs a trivial script
(it prints the wall-clock time when it starts) ``--runs`` times each way:

* Shipyard on Ray: CreateTrainingJob → the script's first line (a server with ``--backend ray``).
* Shipyard local: the same on the local backend, for comparison.
* Ray Jobs (the baseline): ``JobSubmissionClient.submit_job`` (what ``ray job submit`` calls) →
  the script's first line.

All in this process, now; medians, and Shipyard-on-Ray over Ray Jobs as the ratio.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))
from training_overhead import SCRIPT, shipyard

from shipyard.compute.ray._testing import RayCluster


def ray_jobs(cluster: RayCluster, script: Path, runs: int) -> list[float]:
    from ray.job_submission import JobStatus, JobSubmissionClient

    client = JobSubmissionClient(f"http://127.0.0.1:{cluster.dashboard_port}")
    starts = []
    for _ in range(runs + 1):  # the first warms the job manager up; not counted
        t0 = time.time()
        job = client.submit_job(entrypoint=f"{sys.executable} {script}")
        while "start " not in (logs := client.get_job_logs(job)):
            status = client.get_job_status(job)
            if status in (JobStatus.FAILED, JobStatus.STOPPED):
                raise RuntimeError(f"ray job {job} {status}: {logs}")
            time.sleep(0.005)
        line = next(line for line in logs.splitlines() if line.startswith("start "))
        starts.append(float(line.split()[1]) - t0)
        while client.get_job_status(job) != JobStatus.SUCCEEDED:
            time.sleep(0.01)
    return starts[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=10)
    args = parser.parse_args()
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "train.py"
        script.write_text(SCRIPT)
        with RayCluster(Path(tmp) / "ray", nodes=2, cpus=1, memory_gib=3, dashboard=True) as cluster:
            baseline = ray_jobs(cluster, script, args.runs)
            on_ray, _ = shipyard(
                args.runs, Path(tmp) / "ray-data", ["--backend", "ray", "--ray-address", cluster.address]
            )
        local, _ = shipyard(args.runs, Path(tmp) / "local-data")
    med = statistics.median
    rows = {
        "ray job submit": med(baseline),
        "shipyard, ray backend": med(on_ray),
        "shipyard, local backend": med(local),
    }
    for label, seconds in rows.items():
        print(f"{label:24} {seconds * 1000:8.1f} ms")
    print(f"shipyard on ray / ray job submit: {med(on_ray) / med(baseline):.2f}")
    print(json.dumps({k: round(v * 1000, 1) for k, v in rows.items()}))


if __name__ == "__main__":
    main()
