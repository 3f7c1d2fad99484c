"""Platform overhead of a training job against running the same script directly with ``python``.

    .venv/bin/python benchmarks/training_overhead.py [--runs 15]

Two scripts, each printing the wall-clock time when its code starts and when it ends: a trivial
one, and one that imports scikit-learn and fits a small model (what a user's first job does).
Measured for each:

* start: submit → user code starts. Shipyard: CreateTrainingJob is sent → the script's first line.
  Baseline: ``subprocess.Popen([python, script])`` → the script's first line.
* work (the scikit-learn script): its first line → its last (the imports and the fit), in the
  job's sandbox against the same interpreter outside it.
* finish: user code ends → done. Shipyard: the script's last line → DescribeTrainingJob answers
  Completed (model.tar.gz uploaded). Baseline: the script's last line → ``wait()`` returns.

The baseline's ``python`` is this one for the trivial script and the job's own environment's
(the scikit-learn 1.2 image's, built by the first job, its bytecode compiled before any run is
timed) for the scikit-learn script. Both run in this process, on this machine, now; the overhead
each way is Shipyard minus baseline (medians), the goal ≤ 150 ms.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import boto3

from shipyard.server import ServerProcess

SCRIPT = """
import time
print("start", time.time(), flush=True)
open(__import__("os").environ.get("SM_MODEL_DIR", "/tmp") + "/model.txt", "w").write("m")
print("end", time.time(), flush=True)
"""
SKLEARN_SCRIPT = """
import time
print("start", time.time(), flush=True)
import os
import joblib
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
x, y = load_iris(return_X_y=True)
joblib.dump(LogisticRegression(max_iter=500).fit(x, y), os.environ.get("SM_MODEL_DIR", "/tmp") + "/model.joblib")
print("end", time.time(), flush=True)
"""
SCRIPTS = {"trivial": SCRIPT, "sklearn": SKLEARN_SCRIPT}

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def _stamps(lines: list[str]) -> tuple[float, float]:
    found = {line.split()[0]: float(line.split()[1]) for line in lines if line.startswith(("start ", "end "))}
    return found["start"], found["end"]


Runs = dict[str, list[float]]  # start, work, finish: seconds each run


def baseline(python: str, script: Path, runs: int) -> Runs:
    out: Runs = {"start": [], "work": [], "finish": []}
    for _ in range(runs):
        t0 = time.time()
        process = subprocess.Popen([python, str(script)], stdout=subprocess.PIPE, text=True)
        stdout, _ = process.communicate()
        t_done = time.time()
        start, end = _stamps(stdout.splitlines())
        out["start"].append(start - t0)
        out["work"].append(end - start)
        out["finish"].append(t_done - end)
    return out


class Jobs:
    """Training jobs on one server, one script archive per name."""

    def __init__(self, server: ServerProcess) -> None:
        kw = {
            "endpoint_url": server.url,
            "region_name": "us-east-1",
            "aws_access_key_id": "k",
            "aws_secret_access_key": "s",
        }
        self.s3, self.sm = boto3.client("s3", **kw), boto3.client("sagemaker", **kw)
        self.logs = boto3.client("logs", **kw)
        self.s3.create_bucket(Bucket="bench")
        for name, text in SCRIPTS.items():
            archive = io.BytesIO()
            with tarfile.open(fileobj=archive, mode="w:gz") as tar:
                info = tarfile.TarInfo("train.py")
                info.size = len(text)
                tar.addfile(info, io.BytesIO(text.encode()))
            self.s3.put_object(Bucket="bench", Key=f"code/{name}.tar.gz", Body=archive.getvalue())
        self.sm.list_tags(ResourceArn="arn:aws:sagemaker:us-east-1:000000000000:training-job/warmup")
        self.count = 0

    def run(self, script: str) -> tuple[float, float, float]:
        """One job: (start, work, finish) in seconds."""
        self.count += 1
        name = f"bench-{self.count}"
        t0 = time.time()
        self.sm.create_training_job(
            TrainingJobName=name,
            RoleArn="arn:aws:iam::000000000000:role/R",
            AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
            HyperParameters={
                "sagemaker_program": '"train.py"',
                "sagemaker_submit_directory": f'"s3://bench/code/{script}.tar.gz"',
            },
            OutputDataConfig={"S3OutputPath": "s3://bench/out"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            StoppingCondition={"MaxRuntimeInSeconds": 600},
        )
        while (job := self.sm.describe_training_job(TrainingJobName=name))[
            "TrainingJobStatus"
        ] == "InProgress":
            time.sleep(0.002)
        t_done = time.time()
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        [stream] = self.logs.describe_log_streams(
            logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{name}/"
        )["logStreams"]
        events = self.logs.get_log_events(
            logGroupName="/aws/sagemaker/TrainingJobs",
            logStreamName=stream["logStreamName"],
            startFromHead=True,
        )["events"]
        start, end = _stamps([e["message"] for e in events])
        return start - t0, end - start, t_done - end


def environment_python(data_dir: Path, timeout: float = 600) -> str:
    """The interpreter of the (one) environment the first job built, once its bytecode is compiled
    (envs/_bytecode.py does that in the background after the build)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for marker in (data_dir / "envs").glob("*/shipyard-env.json"):
            if json.loads(marker.read_text()).get("bytecode"):
                return str(marker.parent / "bin" / "python")
        time.sleep(0.5)
    raise SystemExit(
        f"no environment with its bytecode compiled under {data_dir / 'envs'} after {timeout:g} s"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    measured: dict[str, tuple[Runs, Runs]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        data_dir = Path(tmp) / "data"
        with ServerProcess(data_dir) as server:
            jobs = Jobs(server)
            jobs.run("sklearn")  # builds the environment (not timed)
            env_python = environment_python(data_dir)
            jobs.run("sklearn")  # warm
            ship: dict[str, Runs] = {}
            for script in SCRIPTS:
                ship[script] = {"start": [], "work": [], "finish": []}
                for _ in range(args.runs):
                    for key, value in zip(("start", "work", "finish"), jobs.run(script), strict=True):
                        ship[script][key].append(value)
        for script, text in SCRIPTS.items():
            path = Path(tmp) / f"train_{script}.py"  # not sklearn.py: it would shadow the package
            path.write_text(text)
            python = sys.executable if script == "trivial" else env_python
            baseline(python, path, 2)  # warm the page cache
            measured[script] = (baseline(python, path, args.runs), ship[script])
    med = statistics.median
    print(f"{'':16} {'python (ms)':>12} {'shipyard (ms)':>14} {'overhead (ms)':>14} {'ratio':>7}")
    summary: dict[str, dict[str, float]] = {}
    for script, (base, ship_runs) in measured.items():
        for phase in ("start", "work", "finish"):
            if phase == "work" and script == "trivial":
                continue
            b, s = med(base[phase]), med(ship_runs[phase])
            label = f"{script} {phase}"
            summary[label] = {"python_ms": round(b * 1000, 1), "shipyard_ms": round(s * 1000, 1)}
            print(f"{label:16} {b * 1000:12.1f} {s * 1000:14.1f} {(s - b) * 1000:14.1f} {s / b:7.1f}")
    print(json.dumps(summary))


if __name__ == "__main__":
    main()
