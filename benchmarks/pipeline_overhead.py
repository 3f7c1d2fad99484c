"""What a pipeline adds to its jobs: a chain of trivial training jobs run as a pipeline, against the
same jobs run one after another by a client that starts each as soon as the one before completed.

    .venv/bin/python benchmarks/pipeline_overhead.py [--steps 5] [--runs 3]

Measured, on one server in this process, medians over ``--runs``:

* baseline: CreateTrainingJob, poll DescribeTrainingJob every 10 ms until Completed, next job;
  wall time for the chain.
* pipeline: StartPipelineExecution of the same jobs as Training steps, each depending on the one
  before; poll DescribePipelineExecution every 10 ms until Succeeded; wall time.
* cached: the same pipeline started again with every step's CacheConfig on: each step reuses the
  previous run's job; wall time.

The ratio is pipeline over baseline; the per-step overhead is their difference over the steps.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tarfile
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import boto3

sys.path.insert(0, str(Path(__file__).parent))
from training_overhead import IMAGE, SCRIPT

from shipyard.server import ServerProcess

ROLE = "arn:aws:iam::000000000000:role/Bench"


def _request(code: str) -> dict[str, Any]:
    return {
        "RoleArn": ROLE,
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {
            "sagemaker_program": '"train.py"',
            "sagemaker_submit_directory": json.dumps(code),
        },
        "OutputDataConfig": {"S3OutputPath": "s3://bench/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }


def baseline(sm: Any, code: str, steps: int) -> float:
    t0 = time.perf_counter()
    for _ in range(steps):
        name = f"chain-{uuid.uuid4().hex[:12]}"
        sm.create_training_job(TrainingJobName=name, **_request(code))
        while (status := sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]) != "Completed":
            if status in ("Failed", "Stopped"):
                raise RuntimeError(f"{name} {status}")
            time.sleep(0.01)
    return time.perf_counter() - t0


def run_pipeline(sm: Any, name: str) -> float:
    t0 = time.perf_counter()
    arn = sm.start_pipeline_execution(PipelineName=name)["PipelineExecutionArn"]
    while (found := sm.describe_pipeline_execution(PipelineExecutionArn=arn))[
        "PipelineExecutionStatus"
    ] != "Succeeded":
        if found["PipelineExecutionStatus"] in ("Failed", "Stopped"):
            raise RuntimeError(f"{arn}: {found.get('FailureReason')}")
        time.sleep(0.01)
    return time.perf_counter() - t0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=5)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp) / "data") as server:
        kw = {
            "endpoint_url": server.url,
            "region_name": "us-east-1",
            "aws_access_key_id": "k",
            "aws_secret_access_key": "s",
        }
        s3, sm = boto3.client("s3", **kw), boto3.client("sagemaker", **kw)
        s3.create_bucket(Bucket="bench")
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            info = tarfile.TarInfo("train.py")
            info.size = len(SCRIPT)
            tar.addfile(info, io.BytesIO(SCRIPT.encode()))
        s3.put_object(Bucket="bench", Key="code/sourcedir.tar.gz", Body=archive.getvalue())
        code = "s3://bench/code/sourcedir.tar.gz"
        baseline(sm, code, 1)  # warm up: the environment, the fork server
        steps = [
            {
                "Name": f"step-{i}",
                "Type": "Training",
                "Arguments": _request(code),
                **({"DependsOn": [f"step-{i - 1}"]} if i else {}),
            }
            for i in range(args.steps)
        ]
        definition = {"Version": "2020-12-01", "Parameters": [], "Steps": steps}
        sm.create_pipeline(PipelineName="chain", PipelineDefinition=json.dumps(definition), RoleArn=ROLE)
        cached = {
            **definition,
            "Steps": [{**s, "CacheConfig": {"Enabled": True, "ExpireAfter": "PT1H"}} for s in steps],
        }
        sm.create_pipeline(PipelineName="cached", PipelineDefinition=json.dumps(cached), RoleArn=ROLE)
        run_pipeline(sm, "cached")  # the run later runs reuse
        direct, piped, reused = [], [], []
        for _ in range(args.runs):
            direct.append(baseline(sm, code, args.steps))
            piped.append(run_pipeline(sm, "chain"))
            reused.append(run_pipeline(sm, "cached"))
    b, p, c = (statistics.median(x) for x in (direct, piped, reused))
    print(f"{args.steps} chained trivial training jobs, medians of {args.runs} runs:")
    print(f"  baseline (client starts each when the last completed): {b * 1000:7.0f} ms")
    print(f"  pipeline:                                              {p * 1000:7.0f} ms  (ratio {p / b:.2f})")
    print(f"  pipeline, every step cached:                           {c * 1000:7.0f} ms")
    print(f"  per-step overhead of the pipeline: {(p - b) / args.steps * 1000:.0f} ms")


if __name__ == "__main__":
    main()
