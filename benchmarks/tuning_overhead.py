"""Overhead of a tuning job against a plain Optuna loop launching the same script as subprocesses.

    .venv/bin/python benchmarks/tuning_overhead.py [--trials 40] [--parallel 2] [--work 0] [--space gp|tpe|both]

Both search the same space with the same sampler, ``--parallel`` trials at a time, for
``--trials`` trials of a trivial script (which sleeps ``--work`` seconds, to see the overhead
against trials that do something). The sampler is the one Shipyard chooses for the space
(``core.tuning.choose_sampler``, built by the tuning service's own ``make_sampler``): ``gp`` is one
Continuous range, which takes the Gaussian process; ``tpe`` adds more ranges than a Gaussian
process searches (``GP_MAX_PARAMETERS``, which the script ignores), which takes multivariate TPE
with constant liar. Baseline: ``study.ask`` → ``subprocess.run([python,
script, --x, v])`` → ``study.tell`` in ``--parallel`` threads, on one kept study. Shipyard:
CreateHyperParameterTuningJob and wait for Completed. The instance type is a site-defined 1-vCPU
type (added through ``<data dir>/instance_types.csv``), so that two trials fit at once on a 2-core
machine, as two baseline subprocesses do. Also printed: the server's memory (its own, and its
tuning worker process's, where Optuna and torch live) and the load average, to tell a quiet run
from a loaded one. Goal: Shipyard's wall time at most 1.15 times the baseline's.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
import tarfile
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import optuna

from shipyard.core.tuning import GP_MAX_PARAMETERS, SamplerChoice, TuningJobSpec, choose_sampler
from shipyard.envs._cache import MARKER, has_bytecode
from shipyard.server import ServerProcess
from shipyard.services._tuning_search import make_sampler
from shipyard.services.tuning import _gp_installed

SCRIPT = """
import sys, time
args = dict(zip(sys.argv[1::2], sys.argv[2::2]))
x = float(args.get("-x", args.get("--x", 0)))
time.sleep(float(args.get("--work", 0)))
print(f"score={1 - (x - 0.3) ** 2:.6f}")
"""


def range_names(space: str) -> list[str]:
    """x, and for ``tpe`` more ranges than a Gaussian process searches (the script ignores them)."""
    return ["x"] + ([f"d{i}" for i in range(GP_MAX_PARAMETERS)] if space == "tpe" else [])


def ranges_for(space: str) -> dict[str, Any]:
    return {
        "ContinuousParameterRanges": [
            {"Name": name, "MinValue": "0", "MaxValue": "1"} for name in range_names(space)
        ]
    }


def tuning_config(space: str, trials: int, parallel: int) -> dict[str, Any]:
    return {
        "Strategy": "Bayesian",
        "HyperParameterTuningJobObjective": {"Type": "Maximize", "MetricName": "score"},
        "ResourceLimits": {"MaxNumberOfTrainingJobs": trials, "MaxParallelTrainingJobs": parallel},
        "ParameterRanges": ranges_for(space),
    }


def definition(work: float) -> dict[str, Any]:
    """The trials' TrainingJobDefinition."""
    return {
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


def sampler_choice(space: str, trials: int, parallel: int) -> tuple[TuningJobSpec, SamplerChoice]:
    """The sampler Shipyard takes for this tuning job (the rule itself, not a copy of it)."""
    spec = TuningJobSpec.from_request(
        {
            "HyperParameterTuningJobName": "bench",
            "HyperParameterTuningJobConfig": tuning_config(space, trials, parallel),
            "TrainingJobDefinition": definition(0),
        }
    )
    return spec, choose_sampler(spec, gp_available=_gp_installed())


def baseline(script: Path, space: str, trials: int, parallel: int, work: float) -> float:
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    spec, choice = sampler_choice(space, trials, parallel)
    study = optuna.create_study(direction="maximize", sampler=make_sampler(choice, spec, seed=0))
    distributions = {name: optuna.distributions.FloatDistribution(0, 1) for name in range_names(space)}
    lock = threading.Lock()
    remaining = [trials]

    def worker() -> None:
        while True:
            with lock:
                if remaining[0] == 0:
                    return
                remaining[0] -= 1
                trial = study.ask(distributions)
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


def wait_for_bytecode(envs: Path, timeout: float = 600) -> float:
    """Seconds until every environment in ``envs`` has its bytecode compiled."""
    started = time.monotonic()
    while time.monotonic() - started < timeout:
        if (markers := list(envs.glob("*/" + MARKER))) and all(has_bytecode(m.parent) for m in markers):
            break
        time.sleep(0.1)
    return time.monotonic() - started


def memory_mib(pid: int) -> dict[str, int]:
    """A process's resident memory now and at its peak (MiB)."""
    fields = dict(
        line.split(":", 1) for line in Path(f"/proc/{pid}/status").read_text().splitlines() if ":" in line
    )
    return {key: int(fields[key].split()[0]) // 1024 for key in ("VmRSS", "VmHWM")}


def children(pid: int) -> list[int]:
    found = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        found += [int(c) for c in (task / "children").read_text().split()]
    return found


class Shipyard:
    """A server with the bench bucket, script and definition, its environment built by a warm-up."""

    def __init__(self, data_dir: Path, parallel: int, work: float) -> None:
        data_dir.mkdir(parents=True)
        (data_dir / "instance_types.csv").write_text(
            "instance_type,family,vcpu,memory_gib,training_usd_per_hour\nml.bench.small,bench,1,1,0.01\n"
        )
        self.server = ServerProcess(data_dir).start()
        kw = {
            "endpoint_url": self.server.url,
            "region_name": "us-east-1",
            "aws_access_key_id": "k",
            "aws_secret_access_key": "s",
        }
        s3, self.sm = boto3.client("s3", **kw), boto3.client("sagemaker", **kw)
        s3.create_bucket(Bucket="bench")
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            info = tarfile.TarInfo("train.py")
            info.size = len(SCRIPT)
            tar.addfile(info, io.BytesIO(SCRIPT.encode()))
        s3.put_object(Bucket="bench", Key="code/sourcedir.tar.gz", Body=archive.getvalue())
        self.parallel = parallel
        self.definition = definition(work)
        self.tune("warmup", "gp", 2)  # builds the job environment once, as any first job does
        # and its bytecode, in the background: the CPU that takes is not the trials' to pay
        self.compiling_s = wait_for_bytecode(data_dir / "envs")

    def tune(self, name: str, space: str, count: int) -> float:
        started = time.monotonic()
        self.sm.create_hyper_parameter_tuning_job(
            HyperParameterTuningJobName=name,
            HyperParameterTuningJobConfig=tuning_config(space, count, self.parallel),
            TrainingJobDefinition=self.definition,
        )
        while True:
            status = self.sm.describe_hyper_parameter_tuning_job(HyperParameterTuningJobName=name)
            if status["HyperParameterTuningJobStatus"] != "InProgress":
                break
            time.sleep(0.05)
        assert status["HyperParameterTuningJobStatus"] == "Completed", status.get("FailureReason")
        return time.monotonic() - started

    def memory(self) -> tuple[dict[str, int], list[dict[str, int]]]:
        """The server's memory, and each of its Python children's (the tuning worker among them)."""
        assert self.server.process is not None
        pid = self.server.process.pid
        workers = []
        for child in children(pid):
            try:
                if "python" in Path(f"/proc/{child}/cmdline").read_text():
                    workers.append(memory_mib(child))
            except OSError:
                continue
        return memory_mib(pid), workers

    def close(self) -> None:
        self.server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=40)
    parser.add_argument("--parallel", type=int, default=2)
    parser.add_argument("--work", type=float, default=0.0, help="seconds each trial sleeps")
    parser.add_argument("--space", choices=("gp", "tpe", "both"), default="both")
    args = parser.parse_args()
    spaces = ("gp", "tpe") if args.space == "both" else (args.space,)
    print(f"{args.trials} trials of {args.work} s, {args.parallel} at a time; load {os.getloadavg()[0]:.1f}")
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "train.py"
        script.write_text(SCRIPT)
        shipyard = Shipyard(Path(tmp) / "data", args.parallel, args.work)
        print(f"(the warm-up's environment compiled its bytecode in {shipyard.compiling_s:.1f} s more)")
        try:
            for space in spaces:
                _, choice = sampler_choice(space, args.trials, args.parallel)
                base = baseline(script, space, args.trials, args.parallel, args.work)
                ship = shipyard.tune(f"bench-{space}", space, args.trials)
                results[space] = {
                    "baseline_s": round(base, 2),
                    "shipyard_s": round(ship, 2),
                    "ratio": round(ship / base, 2),
                }
                print(f"\n{space}: both search with {choice.describe()}")
                print(
                    f"  plain Optuna loop + subprocesses: {base:6.2f} s ({base / args.trials * 1000:.0f} ms a trial)"
                )
                print(
                    f"  Shipyard tuning job:              {ship:6.2f} s ({ship / args.trials * 1000:.0f} ms a trial)"
                )
                print(f"  ratio {ship / base:.2f} (goal <= 1.15)")
            server, workers = shipyard.memory()
        finally:
            shipyard.close()
    print(
        f"\nserver memory {server['VmRSS']} MiB (peak {server['VmHWM']}); "
        + (
            "its Python children (the tuning worker, the agents' fork server): "
            + ", ".join(f"{w['VmRSS']} MiB (peak {w['VmHWM']})" for w in workers)
            if workers
            else "no Python children"
        )
    )
    print(f"load {os.getloadavg()[0]:.1f}")
    print(json.dumps({**results, "server_mib": server, "children_mib": workers}))


if __name__ == "__main__":
    main()
