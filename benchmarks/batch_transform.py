"""Batch transform throughput: a 1,000,000-row CSV scored by a small scikit-learn model.

    bash benchmarks/setup-venv
    benchmarks/.venv/bin/python benchmarks/batch_transform.py [--rows 1000000] [--runs 3]

Baseline: one process reading the CSV in chunks (pandas) and calling ``model.predict`` on each,
writing the predictions, with pandas, scikit-learn and the model already loaded. Shipyard:
CreateTransformJob on the same file (MultiRecord, 6 MB payloads, 2 concurrent transforms, SplitType
Line, ml.m5.large: 2 vCPUs), from creation to Completed: the agent, the model server's start
(imports, model load) and the scoring all included. Goal: Shipyard's rows per second at least 0.7
times the baseline's. Each run measures the baseline again just before the job, so a ratio compares
two measurements taken under the same load.

Also reported, per run: where the job's time went (before the model server starts: scheduling,
the agent, the model and environment; the model server's start; scoring, with its steady rate;
after: the output's commit and the job's end), the peak memory (PSS) of the job's processes (the
agent and everything under it), which stays bounded because the input is streamed, and, for
context, a second baseline: the same loop as a script of its own (``python score.py``: start,
imports and the model load included, in this venv with its bytecode), which is what a transform
job has to do too. The first job builds the environment; its bytecode is compiled in the background
after it, and the benchmark waits for that (as a site's later jobs find it) before measuring. Set
``SHIPYARD_ENVS_DIR`` to keep the environment between runs of the benchmark.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import os
import statistics
import subprocess
import sys
import tarfile
import tempfile
import textwrap
import threading
import time
from pathlib import Path
from typing import Any

import boto3
import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from shipyard.server import ServerProcess

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"
SCRIPT = textwrap.dedent(
    """
    import sys
    import joblib, pandas as pd
    model = joblib.load(sys.argv[1])
    with open(sys.argv[3], "w") as f:
        for chunk in pd.read_csv(sys.argv[2], header=None, chunksize=100_000):
            f.write("\\n".join(map(str, model.predict(chunk.to_numpy()).tolist())) + "\\n")
    """
)


def baseline(model: LogisticRegression, path: Path, out: Path) -> float:
    started = time.perf_counter()
    with out.open("w") as f:
        for chunk in pd.read_csv(path, header=None, chunksize=100_000):
            f.write("\n".join(map(str, model.predict(chunk.to_numpy()).tolist())) + "\n")
    return time.perf_counter() - started


def script_baseline(script: Path, model: Path, path: Path, out: Path) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, str(script), str(model), str(path), str(out)], check=True)
    return time.perf_counter() - started


def _memory_of_tree(root: int) -> int:
    """The proportional set size (PSS: shared pages split among their sharers) of ``root`` and
    every process under it, in bytes; RSS where PSS cannot be read."""
    children: dict[int, list[int]] = {}
    for proc in Path("/proc").glob("[0-9]*"):
        with contextlib.suppress(OSError, ValueError, IndexError):
            parent = int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1])
            children.setdefault(parent, []).append(int(proc.name))
    total, todo = 0, [root]
    while todo:
        pid = todo.pop()
        todo += children.get(pid, [])
        with contextlib.suppress(OSError, ValueError, IndexError):
            rollup = Path(f"/proc/{pid}/smaps_rollup")
            try:
                line = next(x for x in rollup.read_text().splitlines() if x.startswith("Pss:"))
                total += int(line.split()[1]) * 1024
            except (OSError, StopIteration):
                total += int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * 4096
    return total


def _wait_for_bytecode(envs: Path, timeout: float = 600) -> float:
    """Seconds until every environment in ``envs`` has its bytecode compiled."""
    started = time.perf_counter()
    while time.perf_counter() - started < timeout:
        markers = [json.loads(p.read_text()) for p in envs.glob("*/shipyard-env.json")]
        if markers and all(m.get("bytecode") for m in markers):
            break
        time.sleep(0.2)
    return time.perf_counter() - started


def _phases(log: Path, created: float, completed: float) -> dict[str, float]:
    """Seconds in each phase of the job, from the agent's log lines (epoch milliseconds)."""
    lines = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]

    def at(*prefixes: str) -> float:
        return next(x["t"] / 1000 for p in prefixes for x in lines if x["m"].startswith(p))

    start = at("Shipyard: starting the model server")
    ready = at("Shipyard: the model server is ready", "Model server ready")  # (as servers before said it)
    done = at("Shipyard: transformed")
    return {
        "before the model server": start - created,
        "model server start": ready - start,
        "scoring": done - ready,
        "after scoring": completed - done,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    features = rng.normal(size=(args.rows, 4)).round(4)
    labels = (features @ np.array([1.0, -2.0, 0.5, 1.5]) > 0).astype(int)
    model = LogisticRegression().fit(features[:10_000], labels[:10_000])
    expected = model.predict(features)
    # A background compile may still be writing into an environment inside it when it is removed.
    with tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp:
        data = Path(tmp) / "rows.csv"
        np.savetxt(data, features, delimiter=",", fmt="%.4f")
        size_mb = data.stat().st_size / 2**20
        joblib.dump(model, Path(tmp) / "model.joblib")
        (Path(tmp) / "score.py").write_text(SCRIPT)
        archive = io.BytesIO()
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            tar.add(Path(tmp) / "model.joblib", arcname="model.joblib")
        with ServerProcess(Path(tmp) / "data") as server:
            kw: dict[str, Any] = {
                "endpoint_url": server.url,
                "region_name": "us-east-1",
                "aws_access_key_id": "k",
                "aws_secret_access_key": "s",
            }
            s3, sm = boto3.client("s3", **kw), boto3.client("sagemaker", **kw)
            s3.create_bucket(Bucket="bench")
            s3.put_object(Bucket="bench", Key="model/model.tar.gz", Body=archive.getvalue())
            s3.upload_file(str(data), "bench", "input/rows.csv")
            sm.create_model(
                ModelName="bench",
                ExecutionRoleArn="arn:aws:iam::000000000000:role/R",
                PrimaryContainer={"Image": IMAGE, "ModelDataUrl": "s3://bench/model/model.tar.gz"},
            )

            def transform(name: str) -> tuple[float, int, dict[str, float]]:
                folder = Path(tmp) / "data" / "jobs" / "_transform" / name / "attempt-0" / "algo-1"
                peak, done = [0], threading.Event()

                def sample() -> None:
                    while not done.wait(0.05):
                        with contextlib.suppress(OSError, ValueError, KeyError, TypeError):
                            pid = int(json.loads((folder / "status.json").read_text())["agent_pid"])
                            peak[0] = max(peak[0], _memory_of_tree(pid))

                sampler = threading.Thread(target=sample)
                sampler.start()
                created, started = time.time(), time.perf_counter()
                sm.create_transform_job(
                    TransformJobName=name,
                    ModelName="bench",
                    BatchStrategy="MultiRecord",
                    MaxPayloadInMB=6,
                    MaxConcurrentTransforms=2,
                    TransformInput={
                        "DataSource": {
                            "S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": "s3://bench/input/"}
                        },
                        "ContentType": "text/csv",
                        "SplitType": "Line",
                    },
                    TransformOutput={
                        "S3OutputPath": f"s3://bench/{name}",
                        "Accept": "text/csv",
                        "AssembleWith": "Line",
                    },
                    TransformResources={"InstanceType": "ml.m5.large", "InstanceCount": 1},
                )
                while (job := sm.describe_transform_job(TransformJobName=name))[
                    "TransformJobStatus"
                ] == "InProgress":
                    time.sleep(0.02)
                seconds, completed = time.perf_counter() - started, time.time()
                done.set()
                sampler.join()
                assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
                return seconds, peak[0], _phases(folder / "log.jsonl", created, completed)

            transform("warmup")  # the first job builds the scikit-learn environment
            envs = Path(os.environ.get("SHIPYARD_ENVS_DIR") or Path(tmp) / "data" / "envs")
            compiling = _wait_for_bytecode(envs)
            print(f"{args.rows} rows ({size_mb:.0f} MB of CSV); waited {compiling:.1f} s for bytecode")
            ratios, script_ratios = [], []
            for run in range(args.runs):
                base = baseline(model, data, Path(tmp) / "baseline.out")
                script = script_baseline(
                    Path(tmp) / "score.py", Path(tmp) / "model.joblib", data, Path(tmp) / "script.out"
                )
                seconds, peak, phases = transform(f"bench-{run}")
                scored = s3.get_object(Bucket="bench", Key=f"bench-{run}/rows.csv.out")["Body"].read()
                assert [int(v) for v in scored.split()] == expected.tolist(), (
                    "the job's predictions differ from the model's"
                )
                ratios.append(base / seconds)
                script_ratios.append(script / seconds)
                steady = args.rows / phases["scoring"]
                print(
                    f"run {run + 1}: in-process {base:5.2f} s ({args.rows / base:9,.0f} rows/s), "
                    f"as a script {script:5.2f} s, Shipyard {seconds:5.2f} s "
                    f"({args.rows / seconds:9,.0f} rows/s), peak memory {peak / 2**20:.0f} MiB; "
                    f"ratio {base / seconds:.2f} (vs the script {script / seconds:.2f})"
                )
                first = phases["before the model server"] + phases["model server start"]
                print(
                    "       "
                    + ", ".join(f"{what} {value:.2f} s" for what, value in phases.items())
                    + f"; the first records sent after {first:.2f} s; steady {steady:,.0f} rows/s "
                    + f"({steady / (args.rows / base):.2f}x in-process)"
                )
            print(
                f"ratio {statistics.median(ratios):.2f} median of {args.runs} (goal >= 0.7); "
                f"against the script {statistics.median(script_ratios):.2f}"
            )


if __name__ == "__main__":
    main()
