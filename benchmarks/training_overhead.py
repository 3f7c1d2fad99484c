"""Platform overhead of a training job against running the same script directly with ``python``.

    .venv/bin/python benchmarks/training_overhead.py [--runs 15]

A trivial script prints the wall-clock time when its code starts and when it ends. Measured:

* start: submit → user code starts. Shipyard: CreateTrainingJob is sent → the script's first line.
  Baseline: ``subprocess.Popen([python, script])`` → the script's first line.
* finish: user code ends → done. Shipyard: the script's last line → DescribeTrainingJob answers
  Completed (model.tar.gz uploaded). Baseline: the script's last line → ``wait()`` returns.

Both run in this process, on this machine, now; the overhead each way is Shipyard minus baseline
(medians), the goal ≤ 150 ms.
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

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def _stamps(lines: list[str]) -> tuple[float, float]:
    found = {line.split()[0]: float(line.split()[1]) for line in lines if line.startswith(("start ", "end "))}
    return found["start"], found["end"]


def baseline(script: Path, runs: int) -> tuple[list[float], list[float]]:
    starts, finishes = [], []
    for _ in range(runs):
        t0 = time.time()
        process = subprocess.Popen([sys.executable, str(script)], stdout=subprocess.PIPE, text=True)
        out, _ = process.communicate()
        t_done = time.time()
        start, end = _stamps(out.splitlines())
        starts.append(start - t0)
        finishes.append(t_done - end)
    return starts, finishes


def shipyard(
    runs: int, data_dir: Path, extra_args: list[str] | None = None, env: dict[str, str] | None = None
) -> tuple[list[float], list[float]]:
    """Start and finish overheads of ``runs`` jobs on a server started with ``extra_args``."""
    with ServerProcess(data_dir, extra_args=extra_args, env=env) as server:
        kw = {
            "endpoint_url": server.url,
            "region_name": "us-east-1",
            "aws_access_key_id": "k",
            "aws_secret_access_key": "s",
        }
        s3, sm, logs = boto3.client("s3", **kw), boto3.client("sagemaker", **kw), boto3.client("logs", **kw)
        s3.create_bucket(Bucket="bench")
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            info = tarfile.TarInfo("train.py")
            info.size = len(SCRIPT)
            tar.addfile(info, io.BytesIO(SCRIPT.encode()))
        s3.put_object(Bucket="bench", Key="code/sourcedir.tar.gz", Body=archive.getvalue())
        sm.list_tags(ResourceArn="arn:aws:sagemaker:us-east-1:000000000000:training-job/warmup")
        starts, finishes = [], []
        for i in range(runs):
            name = f"bench-{i}"
            t0 = time.time()
            sm.create_training_job(
                TrainingJobName=name,
                RoleArn="arn:aws:iam::000000000000:role/R",
                AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
                HyperParameters={
                    "sagemaker_program": '"train.py"',
                    "sagemaker_submit_directory": '"s3://bench/code/sourcedir.tar.gz"',
                },
                OutputDataConfig={"S3OutputPath": "s3://bench/out"},
                ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
                StoppingCondition={"MaxRuntimeInSeconds": 60},
            )
            while sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"] == "InProgress":
                time.sleep(0.002)
            t_done = time.time()
            [stream] = logs.describe_log_streams(
                logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{name}/"
            )["logStreams"]
            events = logs.get_log_events(
                logGroupName="/aws/sagemaker/TrainingJobs",
                logStreamName=stream["logStreamName"],
                startFromHead=True,
            )["events"]
            start, end = _stamps([e["message"] for e in events])
            starts.append(start - t0)
            finishes.append(t_done - end)
        return starts, finishes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=15)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "train.py"
        script.write_text(SCRIPT)
        base_start, base_finish = baseline(script, args.runs)
        ship_start, ship_finish = shipyard(args.runs, Path(tmp) / "data")
    med = statistics.median
    rows = {
        "start": (med(base_start), med(ship_start)),
        "finish": (med(base_finish), med(ship_finish)),
    }
    print(f"{'':8} {'python (ms)':>12} {'shipyard (ms)':>14} {'overhead (ms)':>14} {'ratio':>7}")
    for label, (base, ship) in rows.items():
        print(
            f"{label:8} {base * 1000:12.1f} {ship * 1000:14.1f} {(ship - base) * 1000:14.1f} {ship / base:7.1f}"
        )
    print(
        json.dumps(
            {
                k: {"python_ms": round(b * 1000, 1), "shipyard_ms": round(s * 1000, 1)}
                for k, (b, s) in rows.items()
            }
        )
    )


if __name__ == "__main__":
    main()
