"""Inference components against a model-based endpoint serving the same model, in the same run.

    .venv/bin/python benchmarks/inference_components.py [--requests 200]

One small model (a handler that loads a JSON file) served two ways on one server: an endpoint
whose variant names the model (the baseline), and a component on an endpoint for components.
Printed: how long each takes to serve after its create call (a model server started and healthy
either way), how long scaling the component from 1 to 3 copies takes, and InvokeEndpoint's round
trip through boto3 (median and p95 of ``--requests`` calls each, one at a time, taking turns), with the
component's ratio to the baseline: what choosing a copy adds to a request.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tarfile
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from shipyard.server import ServerProcess

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
ROLE = "arn:aws:iam::000000000000:role/R"
HANDLER = """
import json, os

def model_fn(model_dir):
    with open(os.path.join(model_dir, "model.json")) as f:
        return json.load(f)

def transform_fn(model, body, content_type, accept):
    return json.dumps([model["scale"] * v for v in json.loads(body)]), "application/json"
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


def _timed(condition: Callable[[], bool], what: str, timeout: float = 300) -> float:
    started = time.perf_counter()
    while not condition():
        if time.perf_counter() - started > timeout:
            raise SystemExit(f"still not {what} after {timeout:g} s")
        time.sleep(0.02)
    return time.perf_counter() - started


def _round_trips(
    baseline: Callable[[], Any], measured: Callable[[], Any], count: int
) -> tuple[list[float], list[float]]:
    """Each call's time, the two taking turns (so the machine's load falls on both alike)."""
    for _ in range(10):  # warm the connections
        baseline()
        measured()
    times: tuple[list[float], list[float]] = ([], [])
    for _ in range(count):
        for call, into in ((baseline, times[0]), (measured, times[1])):
            started = time.perf_counter()
            call()
            into.append(time.perf_counter() - started)
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with (
        tempfile.TemporaryDirectory(ignore_cleanup_errors=True) as tmp,
        ServerProcess(Path(tmp) / "data") as server,
    ):
        options: dict[str, Any] = {
            "endpoint_url": server.url,
            "region_name": "us-east-1",
            "aws_access_key_id": "k",
            "aws_secret_access_key": "s",
            "config": Config(retries={"max_attempts": 1}),
        }
        s3, sm, runtime = (boto3.client(n, **options) for n in ("s3", "sagemaker", "sagemaker-runtime"))
        s3.create_bucket(Bucket="bench")
        archive = _tgz({"model.json": json.dumps({"scale": 2}), "code/inference.py": HANDLER})
        s3.put_object(Bucket="bench", Key="model.tar.gz", Body=archive)
        container = {
            "Image": IMAGE,
            "ModelDataUrl": "s3://bench/model.tar.gz",
            "Environment": {"SAGEMAKER_PROGRAM": "inference.py"},
        }
        sm.create_model(ModelName="m", ExecutionRoleArn=ROLE, PrimaryContainer=container)
        variant = {"VariantName": "AllTraffic", "InstanceType": "ml.m5.xlarge", "InitialInstanceCount": 1}
        sm.create_endpoint_config(
            EndpointConfigName="plain", ProductionVariants=[{**variant, "ModelName": "m"}]
        )
        sm.create_endpoint_config(
            EndpointConfigName="shared",
            ExecutionRoleArn=ROLE,
            ProductionVariants=[
                {**variant, "RoutingConfig": {"RoutingStrategy": "LEAST_OUTSTANDING_REQUESTS"}}
            ],
        )
        sm.create_endpoint(EndpointName="shared", EndpointConfigName="shared")
        _timed(
            lambda: sm.describe_endpoint(EndpointName="shared")["EndpointStatus"] == "InService", "InService"
        )
        sm.create_endpoint(EndpointName="warm", EndpointConfigName="plain")  # the environment, prepared once
        _timed(
            lambda: sm.describe_endpoint(EndpointName="warm")["EndpointStatus"] == "InService", "InService"
        )
        sm.create_endpoint(EndpointName="plain", EndpointConfigName="plain")
        plain_up = _timed(
            lambda: sm.describe_endpoint(EndpointName="plain")["EndpointStatus"] == "InService", "InService"
        )

        def component(copies: int) -> Callable[[], bool]:
            def done() -> bool:
                found = sm.describe_inference_component(InferenceComponentName="ic")
                return bool(
                    found["InferenceComponentStatus"] == "InService"
                    and found["RuntimeConfig"]["CurrentCopyCount"] == copies
                )

            return done

        sm.create_inference_component(
            InferenceComponentName="ic",
            EndpointName="shared",
            VariantName="AllTraffic",
            Specification={
                "ModelName": "m",
                "ComputeResourceRequirements": {"NumberOfCpuCoresRequired": 1, "MinMemoryRequiredInMb": 512},
            },
            RuntimeConfig={"CopyCount": 1},
        )
        component_up = _timed(component(1), "InService")
        sm.update_inference_component_runtime_config(
            InferenceComponentName="ic", DesiredRuntimeConfig={"CopyCount": 3}
        )
        scaled = _timed(component(3), "at 3 copies")

        body = json.dumps([1, 2, 3])
        plain, via = _round_trips(
            lambda: runtime.invoke_endpoint(EndpointName="plain", ContentType="application/json", Body=body)[
                "Body"
            ].read(),
            lambda: runtime.invoke_endpoint(
                EndpointName="shared", InferenceComponentName="ic", ContentType="application/json", Body=body
            )["Body"].read(),
            args.requests,
        )

    def p95(times: list[float]) -> float:
        return sorted(times)[int(len(times) * 0.95) - 1]

    print(f"serving after create: endpoint {plain_up:.2f} s, inference component {component_up:.2f} s")
    print(f"inference component from 1 to 3 copies: {scaled:.2f} s")
    for label, times in (("endpoint (baseline)", plain), ("inference component", via)):
        print(
            f"InvokeEndpoint, {label}: median {statistics.median(times) * 1e3:.2f} ms, p95 {p95(times) * 1e3:.2f} ms"
        )
    print(f"ratio, component / endpoint (median): {statistics.median(via) / statistics.median(plain):.2f}")


if __name__ == "__main__":
    main()
