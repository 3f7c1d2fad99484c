"""A burst of queued jobs against the same jobs back to back.

    .venv/bin/python benchmarks/job_burst.py [--jobs 50]

Trivial training jobs (the script writes its model and ends) of a type that takes the whole
machine's share (ml.m5.large, 2 vCPUs: on a 2-core machine one at a time). Back to back: create one,
wait for Completed, create the next. Burst: create them all at once, wait for the last. Both on
the same server, in this process. A queued job should start as soon as the one before it frees
its instance (the agent's exit wakes the scheduler, and the capacity is free in the same pass), so
the burst takes no longer per job than back to back. Goal: burst within 1.2x of back to back.
"""

from __future__ import annotations

import argparse
import io
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3

from shipyard.server import ServerProcess

SCRIPT = "import os\nopen(os.environ['SM_MODEL_DIR'] + '/model.txt', 'w').write('m')\n"
IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"


def _create(sm: Any, name: str) -> None:
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
        StoppingCondition={"MaxRuntimeInSeconds": 600},
    )


def _wait(sm: Any, name: str) -> None:
    while (status := sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]) == "InProgress":
        time.sleep(0.002)
    if status != "Completed":
        raise SystemExit(f"{name}: {status}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=50)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp,
        ServerProcess(Path(tmp) / "data") as server,
    ):
        kw = {"endpoint_url": server.url, "region_name": "us-east-1"}
        kw |= {"aws_access_key_id": "k", "aws_secret_access_key": "s"}
        s3, sm = boto3.client("s3", **kw), boto3.client("sagemaker", **kw)
        s3.create_bucket(Bucket="bench")
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            info = tarfile.TarInfo("train.py")
            info.size = len(SCRIPT)
            tar.addfile(info, io.BytesIO(SCRIPT.encode()))
        s3.put_object(Bucket="bench", Key="code/sourcedir.tar.gz", Body=archive.getvalue())
        _create(sm, "warm-up")  # builds the environment
        _wait(sm, "warm-up")
        began = time.perf_counter()
        for i in range(args.jobs):
            _create(sm, f"serial-{i}")
            _wait(sm, f"serial-{i}")
        serial = (time.perf_counter() - began) / args.jobs
        began = time.perf_counter()
        for i in range(args.jobs):
            _create(sm, f"burst-{i}")
        for i in range(args.jobs):
            _wait(sm, f"burst-{i}")
        burst = (time.perf_counter() - began) / args.jobs
    print(f"back to back: {serial * 1000:.0f} ms a job; burst: {burst * 1000:.0f} ms a job")
    print(f"ratio {burst / serial:.2f} (goal <= 1.2)")


if __name__ == "__main__":
    main()
