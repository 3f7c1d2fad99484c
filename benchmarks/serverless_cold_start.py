"""A serverless endpoint's cold start: the first request after it scaled to zero, against a warm one.

    .venv/bin/python benchmarks/serverless_cold_start.py [--rounds 5] [--warm 50]

One scikit-learn model (logistic regression on iris), trained by a Shipyard training job and
deployed with a ServerlessConfig on a server whose ``serverless_idle_seconds`` is 1. Each round
waits until the endpoint has scaled to zero (its model server's process gone), then times the
first InvokeEndpoint (the cold start: a model server started, its model loaded, the request
answered) and ``--warm`` requests after it. Goal: a cold start of at most 1 s on this machine;
the ratio to a warm request says what scaling to zero costs a request. The baseline, measured in
the same run: a fresh Python of the model's environment (its bytecode cached) loading the model
with joblib and exiting; what Shipyard adds to a cold start is the difference.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import subprocess
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from shipyard.server import ServerProcess

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::000000000000:role/R"
ROWS = json.dumps([[5.1, 3.5, 1.4, 0.2]])
TRAIN = """
import joblib, os
from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression
x, y = load_iris(return_X_y=True)
joblib.dump(LogisticRegression(max_iter=500).fit(x, y), os.path.join(os.environ["SM_MODEL_DIR"], "model.joblib"))
"""


def _tgz(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as tar:
        for name, text in files.items():
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def _until(condition: Any, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise SystemExit(f"still not {what} after {timeout:g} s")
        time.sleep(0.05)


def _instances(url: str, name: str) -> list[dict[str, Any]]:
    view = httpx.get(f"{url}/api/v1/endpoints/{name}").json()
    return [i for v in view["variants"] for i in v["instances"]]


def _answers(url: str) -> bool:
    try:
        httpx.get(f"{url}/ping", timeout=1)
    except httpx.TransportError:
        return False
    return True


def _bare_load(data_dir: Path, s3: Any, artifacts: str, tmp: Path, runs: int = 5) -> list[float]:
    """Seconds for the model's environment's Python to start, load the model and exit."""
    [python] = [p for p in (data_dir / "envs").glob("*/bin/python")]
    bucket, key = artifacts.removeprefix("s3://").split("/", 1)
    model_dir = tmp / "model"
    with tarfile.open(fileobj=io.BytesIO(s3.get_object(Bucket=bucket, Key=key)["Body"].read())) as tar:
        tar.extractall(model_dir, filter="data")
    command = [str(python), "-c", f"import joblib; joblib.load({str(model_dir / 'model.joblib')!r})"]
    env = {"PYTHONPYCACHEPREFIX": str(tmp / "pycache"), "PATH": "/usr/bin:/bin"}
    subprocess.run(command, env=env, check=True)  # compiles the bytecode once
    times = []
    for _ in range(runs):
        began = time.perf_counter()
        subprocess.run(command, env=env, check=True)
        times.append(time.perf_counter() - began)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--warm", type=int, default=50)
    parser.add_argument(
        "--data-dir", type=Path, help="the server's data dir (kept); default: a temporary one"
    )
    args = parser.parse_args()
    import boto3

    with (
        tempfile.TemporaryDirectory() as tmp,
        ServerProcess(
            args.data_dir or Path(tmp) / "data", env={"SHIPYARD_SERVERLESS_IDLE_SECONDS": "1"}
        ) as server,
    ):
        kw = {
            "endpoint_url": server.url,
            "region_name": "us-east-1",
            "aws_access_key_id": "k",
            "aws_secret_access_key": "s",
        }
        s3, sm = boto3.client("s3", **kw), boto3.client("sagemaker", **kw)
        runtime = boto3.client("sagemaker-runtime", **kw)
        s3.create_bucket(Bucket="bench")
        s3.put_object(Bucket="bench", Key="code.tar.gz", Body=_tgz({"train.py": TRAIN}))
        sm.create_training_job(
            TrainingJobName="iris",
            RoleArn=ROLE,
            AlgorithmSpecification={"TrainingImage": IMAGE, "TrainingInputMode": "File"},
            HyperParameters={
                "sagemaker_program": '"train.py"',
                "sagemaker_submit_directory": '"s3://bench/code.tar.gz"',
            },
            OutputDataConfig={"S3OutputPath": "s3://bench/out"},
            ResourceConfig={"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
            StoppingCondition={"MaxRuntimeInSeconds": 600},
        )
        _until(
            lambda: sm.describe_training_job(TrainingJobName="iris")["TrainingJobStatus"] != "InProgress",
            "trained",
            timeout=900,
        )
        job = sm.describe_training_job(TrainingJobName="iris")
        assert job["TrainingJobStatus"] == "Completed", job.get("FailureReason")
        sm.create_model(
            ModelName="iris",
            ExecutionRoleArn=ROLE,
            PrimaryContainer={"Image": IMAGE, "ModelDataUrl": job["ModelArtifacts"]["S3ModelArtifacts"]},
        )
        sm.create_endpoint_config(
            EndpointConfigName="iris",
            ProductionVariants=[
                {
                    "VariantName": "AllTraffic",
                    "ModelName": "iris",
                    "ServerlessConfig": {"MemorySizeInMB": 2048, "MaxConcurrency": 5},
                }
            ],
        )
        sm.create_endpoint(EndpointName="iris", EndpointConfigName="iris")
        _until(
            lambda: sm.describe_endpoint(EndpointName="iris")["EndpointStatus"] != "Creating",
            "InService",
            timeout=900,
        )
        endpoint = sm.describe_endpoint(EndpointName="iris")
        assert endpoint["EndpointStatus"] == "InService", endpoint.get("FailureReason")

        def invoke() -> float:
            began = time.perf_counter()
            answer = runtime.invoke_endpoint(EndpointName="iris", Body=ROWS, ContentType="application/json")
            assert json.loads(answer["Body"].read()) == [0]
            return time.perf_counter() - began

        cold: list[float] = []
        warm: list[float] = []
        last_url: str | None = None
        for round_ in range(args.rounds):
            _until(lambda: _instances(server.url, "iris") == [], "scaled to zero")
            if last_url is not None:
                _until(lambda url=last_url: not _answers(url), "stopped")
            cold.append(invoke())
            warm += [invoke() for _ in range(args.warm)]
            [instance] = _instances(server.url, "iris")
            last_url = instance["url"]
            print(f"round {round_ + 1}: cold {cold[-1] * 1000:.0f} ms", flush=True)

        baseline = _bare_load(Path(server.data_dir), s3, job["ModelArtifacts"]["S3ModelArtifacts"], Path(tmp))

    cold_ms = statistics.median(cold) * 1000
    base_ms = statistics.median(baseline) * 1000
    warm_ms = statistics.median(warm) * 1000
    print()
    print(
        f"cold start (first request after scale-to-zero): median {cold_ms:.0f} ms, max {max(cold) * 1000:.0f} ms"
    )
    print(f"warm request:                                    median {warm_ms:.1f} ms")
    print(f"baseline (a fresh Python loading the model):    median {base_ms:.0f} ms")
    print(f"Shipyard's cold start over the baseline: {cold_ms - base_ms:+.0f} ms ({cold_ms / base_ms:.2f}x)")
    print(
        f"cold / warm: {cold_ms / warm_ms:.0f}x; cold start goal <= 1000 ms: {'met' if cold_ms <= 1000 else 'missed'}"
    )


if __name__ == "__main__":
    main()
