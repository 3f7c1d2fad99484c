"""What a job pays to import scikit-learn and pandas, against the same script in a normal venv.

    .venv/bin/python benchmarks/job_imports.py [--runs 5]

The script times ``import pandas, sklearn.ensemble, sklearn.linear_model`` and prints it. Shipyard:
training jobs of the scikit-learn 1.2-1 image (its environment built by the first job, which is not
counted, and compiled in the background; read-only in the job's sandbox). Baseline in the same process: the same script run with
``python`` in a venv holding the same packages, built with uv and its bytecode compiled, as a
developer's own venv is. Before environments held their bytecode, every job compiled what it
imported again (4-5 s against 1.2-1.3 s here). Goal: import phase ≤ 1.1x the baseline.
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import boto3

from shipyard.envs import ImageResolver
from shipyard.envs._cache import _uv, has_bytecode
from shipyard.server import ServerProcess

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
SCRIPT = """
import time
began = time.perf_counter()
import pandas, sklearn.ensemble, sklearn.linear_model
print("imported", time.perf_counter() - began, flush=True)
"""


def _seconds(lines: list[str]) -> float:
    [found] = [float(line.split()[1]) for line in lines if line.startswith("imported ")]
    return found


def baseline(folder: Path, runs: int) -> list[float]:
    uv = _uv()
    venv = folder / "venv"
    subprocess.run([uv, "venv", "--quiet", str(venv)], check=True)
    requirements = ImageResolver().resolve(IMAGE).requirements
    install = [uv, "pip", "install", "--quiet", "--compile-bytecode", "--python", str(venv / "bin/python")]
    subprocess.run([*install, *requirements], check=True)
    script = folder / "train.py"
    script.write_text(SCRIPT)
    env = {**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}  # as read-only as the job's environment
    return [
        _seconds(
            subprocess.run(
                [venv / "bin/python", script], capture_output=True, text=True, env=env
            ).stdout.splitlines()
        )
        for _ in range(runs)
    ]


def shipyard(data_dir: Path, runs: int) -> list[float]:
    env = {"SHIPYARD_SERVER_PYTHON_JOBS": "off"}
    with ServerProcess(data_dir, env=env) as server:
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
        found = []
        for i in range(runs + 1):  # the first builds the environment: not counted
            name = f"imports-{i}"
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
            while (
                status := sm.describe_training_job(TrainingJobName=name)["TrainingJobStatus"]
            ) == "InProgress":
                time.sleep(0.05)
            if status != "Completed":
                sys.exit(f"{name}: {sm.describe_training_job(TrainingJobName=name).get('FailureReason')}")
            events = logs.filter_log_events(
                logGroupName="/aws/sagemaker/TrainingJobs", logStreamNamePrefix=f"{name}/"
            )["events"]
            if i:
                found.append(_seconds([e["message"] for e in events]))
            else:  # as later jobs of a real site find it: compiled in the background meanwhile
                while not all(has_bytecode(f) for f in (data_dir / "envs").iterdir() if f.is_dir()):
                    time.sleep(0.1)
        return found


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        base = statistics.median(baseline(Path(tmp), args.runs))
        job = statistics.median(shipyard(Path(tmp) / "data", args.runs))
    print(f"import pandas + sklearn: venv (bytecode) {base * 1000:.0f} ms, Shipyard job {job * 1000:.0f} ms")
    print(f"ratio {job / base:.2f} (goal <= 1.1)")


if __name__ == "__main__":
    main()
