"""Batch transform throughput: a 1,000,000-row CSV scored by a small scikit-learn model.

    bash benchmarks/setup-venv
    benchmarks/.venv/bin/python benchmarks/batch_transform.py [--rows 1000000]

Baseline: one process reading the CSV in chunks (pandas) and calling ``model.predict`` on each,
writing the predictions. Shipyard: CreateTransformJob on the same file (MultiRecord, 6 MB
payloads, 2 concurrent transforms, SplitType Line), from creation to Completed — model server
start included. Also reported: the peak memory of the job's processes, which stays bounded (the
input is streamed, not loaded whole). Goal: Shipyard's rows per second at least 0.7 times the
baseline's.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import tarfile
import tempfile
import threading
import time
from pathlib import Path

import boto3
import joblib
import numpy as np
import pandas as pd
from sklearn.linear_model import LogisticRegression

from shipyard.server import ServerProcess

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.4-2-cpu-py3"


def baseline(model: LogisticRegression, path: Path, out: Path) -> float:
    started = time.perf_counter()
    with out.open("w") as f:
        for chunk in pd.read_csv(path, header=None, chunksize=100_000):
            f.write("\n".join(map(str, model.predict(chunk.to_numpy()).tolist())) + "\n")
    return time.perf_counter() - started


def _rss_of_group(pids: set[int]) -> int:
    total = 0
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            stat = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(proc.name) in pids or int(stat[2]) in pids:  # the process, or one of its group
                total += int((proc / "statm").read_text().split()[1]) * 4096
        except (OSError, ValueError, IndexError):
            continue
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    features = rng.normal(size=(args.rows, 4)).round(4)
    labels = (features @ np.array([1.0, -2.0, 0.5, 1.5]) > 0).astype(int)
    model = LogisticRegression().fit(features[:10_000], labels[:10_000])
    with tempfile.TemporaryDirectory() as tmp:
        data = Path(tmp) / "rows.csv"
        np.savetxt(data, features, delimiter=",", fmt="%.4f")
        size_mb = data.stat().st_size / 2**20
        base = baseline(model, data, Path(tmp) / "baseline.out")
        expected = model.predict(features)

        archive = io.BytesIO()
        joblib.dump(model, Path(tmp) / "model.joblib")
        with tarfile.open(fileobj=archive, mode="w:gz") as tar:
            tar.add(Path(tmp) / "model.joblib", arcname="model.joblib")
        with ServerProcess(Path(tmp) / "data") as server:
            kw = {
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

            def transform(name: str) -> tuple[float, int]:
                started = time.perf_counter()
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
                peak, done = [0], threading.Event()

                def sample() -> None:
                    [status] = list(
                        (Path(tmp) / "data" / "jobs" / name).glob("attempt-0/algo-1/status.json")
                    ) or [None]
                    while not done.wait(0.05):
                        if status is None:
                            found = list(
                                (Path(tmp) / "data" / "jobs" / name).glob("attempt-0/algo-1/status.json")
                            )
                            status = found[0] if found else None
                            continue
                        with contextlib.suppress(OSError, ValueError, KeyError):
                            info = json.loads(status.read_text())
                            pids = {int(info["agent_pid"]), int(info.get("user_pgid") or 0)}
                            peak[0] = max(peak[0], _rss_of_group(pids))

                sampler = threading.Thread(target=sample)
                sampler.start()
                while (job := sm.describe_transform_job(TransformJobName=name))[
                    "TransformJobStatus"
                ] == "InProgress":
                    time.sleep(0.02)
                done.set()
                sampler.join()
                assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
                return time.perf_counter() - started, peak[0]

            transform("warmup")  # the first job builds the scikit-learn environment
            seconds, peak = transform("bench")
            scored = s3.get_object(Bucket="bench", Key="bench/rows.csv.out")["Body"].read().split()
            assert [int(v) for v in scored] == expected.tolist(), (
                "the job's predictions differ from the model's"
            )
    print(f"{args.rows} rows ({size_mb:.0f} MB of CSV)")
    print(f"in-process chunked predict: {base:6.2f} s ({args.rows / base:10,.0f} rows/s)")
    print(
        f"Shipyard batch transform:   {seconds:6.2f} s ({args.rows / seconds:10,.0f} rows/s), peak memory {peak / 2**20:.0f} MiB"
    )
    print(f"ratio {base / seconds:.2f} (goal >= 0.7)")


if __name__ == "__main__":
    main()
