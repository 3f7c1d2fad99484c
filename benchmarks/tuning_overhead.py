"""Overhead of a tuning job against a plain Optuna loop launching the same script as subprocesses.

    .venv/bin/python benchmarks/tuning_overhead.py [--trials 40] [--parallel 2] [--work 0]

Both search the same one-dimensional space with TPE, ``--parallel`` trials at a time, for
``--trials`` trials of a trivial script (which sleeps ``--work`` seconds, to see the overhead
against trials that do something). Baseline: ``study.ask`` → ``subprocess.run([python,
script, --x, v])`` → ``study.tell`` in ``--parallel`` threads. Shipyard: CreateHyperParameterTuningJob
and wait for Completed. The instance type is a site-defined 1-vCPU type (added through
``<data dir>/instance_types.csv``), so that two trials fit at once on a 2-core machine, as two
baseline subprocesses do. Goal: Shipyard's wall time at most 1.15 times the baseline's.
"""

from __future__ import annotations

import argparse
import io
import json
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import boto3
import optuna

from shipyard.server import ServerProcess

SCRIPT = """
import sys, time
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
x = float(args.get("-x", args.get("--x", 0)))
time.sleep(float(args.get("--work", 0)))
print(f"score={1 - (x - 0.3) ** 2:.6f}")
"""


def baseline(script: Path, trials: int, parallel: int, work: float) -> float:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    study = optuna.create_study(
        direction="maximize", sampler=optuna.samplers.TPESampler(seed=0, constant_liar=True)
    )
    lock = threading.Lock()
    remaining = [trials]

    def worker() -> None:
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
                trial = study.ask({"x": optuna.distributions.FloatDistribution(0, 1)})
            out = subprocess.run(
                [sys.executable, str(script), "--work", str(work), "-x", str(trial.params["x"])],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
            with lock:
                study.tell(trial, float(out.split("=")[1]))

    started = time.monotonic()
    threads = [threading.Thread(target=worker) for _ in range(parallel)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return time.monotonic() - started


def shipyard(data_dir: Path, trials: int, parallel: int, work: float) -> float:
    data_dir.mkdir(parents=True)
    (data_dir / "instance_types.csv").write_text(
        "instance_type,family,vcpu,memory_gib,training_usd_per_hour\nml.bench.small,bench,1,1,0.01\n"
    )
    with ServerProcess(data_dir) as server:
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
        definition = {
            "StaticHyperParameters": {
                "sagemaker_program": '"train.py"',
                "sagemaker_submit_directory": '"s3://bench/code/sourcedir.tar.gz"',
                "work": str(work),
            },
            "AlgorithmSpecification": {
                "TrainingImage": "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3",
                "TrainingInputMode": "File",
                "MetricDefinitions": [{"Name": "score", "Regex": "score=([0-9.]+)"}],
            },
            "RoleArn": "arn:aws:iam::000000000000:role/R",
            "OutputDataConfig": {"S3OutputPath": "s3://bench/out"},
            "ResourceConfig": {"InstanceType": "ml.bench.small", "InstanceCount": 1, "VolumeSizeInGB": 1},
            "StoppingCondition": {"MaxRuntimeInSeconds": 60},
        }

        def tune(name: str, count: int) -> float:
            started = time.monotonic()
            sm.create_hyper_parameter_tuning_job(
                HyperParameterTuningJobName=name,
                HyperParameterTuningJobConfig={
                    "Strategy": "Bayesian",
                    "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "score"},
                    "ResourceLimits": {"MaxNumberOfTrainingJobs": count, "MaxParallelTrainingJobs": parallel},
                    "ParameterRanges": {
                        "ContinuousParameterRanges": [{"Name": "x", "MinValue": "0", "MaxValue": "1"}]
                    },
                },
                TrainingJobDefinition=definition,
            )
            while True:
                status = sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
                if status["HyperParameterTuningJobStatus"] != "InProgress":
                    break
                time.sleep(0.05)
            assert status["HyperParameterTuningJobStatus"] == "Completed", status.get("FailureReason")
            return time.monotonic() - started

        tune("warmup", 2)  # builds the job environment once, as any first job does
        return tune("bench", trials)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--work", type=float, default=0.0, help="seconds each trial sleeps")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "train.py"
        script.write_text(SCRIPT)
        base = baseline(script, args.trials, args.parallel, args.work)
        ship = shipyard(Path(tmp) / "data", args.trials, args.parallel, args.work)
    print(f"{args.trials} trials of {args.work} s, {args.parallel} at a time")
    print(f"plain Optuna loop + subprocesses: {base:6.2f} s ({base / args.trials * 1000:.0f} ms a trial)")
    print(f"Shipyard tuning job:              {ship:6.2f} s ({ship / args.trials * 1000:.0f} ms a trial)")
    print(f"ratio {ship / base:.2f} (goal <= 1.15)")
    print(
        json.dumps(
            {"baseline_s": round(base, 2), "shipyard_s": round(ship, 2), "ratio": round(ship / base, 2)}
        )
    )


if __name__ == "__main__":
    main()
