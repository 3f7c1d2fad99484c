"""What the asynchronous path costs against InvokeEndpoint, on the same endpoint in one server.

    .venv/bin/python benchmarks/async_inference.py [--requests 200]

One server process, one endpoint (a handler that echoes its JSON input, one instance, its
config with AsyncInferenceConfig and MaxConcurrentInvocationsPerInstance 4). Measured, with
boto3 clients in this process:

* latency: one request at a time, InvokeEndpoint's round trip against InvokeEndpointAsync's
  from the call to the moment its output object is readable (the input uploaded beforehand; the
  output polled every millisecond), p50 of each and their ratio;
* throughput: ``--requests`` requests sent back to back, InvokeEndpoint one after another against
  InvokeEndpointAsync all submitted then every output waited for: requests per second and the
  ratio.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import tarfile
import tempfile
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
BUCKET = "bench-async"
HANDLER = """
def model_fn(model_dir):
    return None

def transform_fn(model, body, content_type, accept):
    return body, "application/json"
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


def _client(service: str, url: str) -> Any:
    return boto3.client(
        service,
        endpoint_url=url,
        region_name="us-east-1",
        aws_access_key_id="bench",
        aws_secret_access_key="bench",
        config=Config(retries={"max_attempts": 1}, max_pool_connections=32),
    )


def _deploy(sm: Any, s3: Any) -> str:
    name = "bench-async"
    s3.put_object(Bucket=BUCKET, Key="code.tar.gz", Body=_tgz({"inference.py": HANDLER}))
    s3.put_object(Bucket=BUCKET, Key="model.tar.gz", Body=_tgz({"model.txt": "unused"}))
    sm.create_model(
        ModelName=name,
        ExecutionRoleArn="arn:aws:iam::000000000000:role/Bench",
        PrimaryContainer={
            "Image": IMAGE,
            "ModelDataUrl": f"s3://{BUCKET}/model.tar.gz",
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{BUCKET}/code.tar.gz",
            },
        },
    )
    sm.create_endpoint_config(
        EndpointConfigName=name,
        ProductionVariants=[
            {"VariantName": "v", "ModelName": name, "InitialInstanceCount": 1, "InstanceType": "ml.m5.large"}
        ],
        AsyncInferenceConfig={
            "OutputConfig": {"S3OutputPath": f"s3://{BUCKET}/out"},
            "ClientConfig": {"MaxConcurrentInvocationsPerInstance": 4},
        },
    )
    sm.create_endpoint(EndpointName=name, EndpointConfigName=name)
    sm.get_waiter("endpoint_in_service").wait(EndpointName=name, WaiterConfig={"Delay": 1})
    return name


def _wait_for(s3: Any, uri: str) -> None:
    bucket, _, key = uri.removeprefix("s3://").partition("/")
    while True:
        try:
            s3.head_object(Bucket=bucket, Key=key)
            return
        except ClientError:
            time.sleep(0.001)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--requests", type=int, default=200)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp, ServerProcess(Path(tmp) / "data") as server:
        sm, s3, runtime = (_client(s, server.url) for s in ("sagemaker", "s3", "sagemaker-runtime"))
        s3.create_bucket(Bucket=BUCKET)
        name = _deploy(sm, s3)
        body = json.dumps({"x": 1}).encode()
        inputs = []
        for i in range(args.requests):
            s3.put_object(Bucket=BUCKET, Key=f"in/{i}.json", Body=body)
            inputs.append(f"s3://{BUCKET}/in/{i}.json")
        for _ in range(10):  # warm both paths
            runtime.invoke_endpoint(EndpointName=name, Body=body, ContentType="application/json")

        sync_latency, async_latency = [], []
        for i in range(min(50, args.requests)):
            started = time.perf_counter()
            runtime.invoke_endpoint(EndpointName=name, Body=body, ContentType="application/json")
            sync_latency.append(time.perf_counter() - started)
            started = time.perf_counter()
            answer = runtime.invoke_endpoint_async(
                EndpointName=name,
                InputLocation=inputs[i],
                ContentType="application/json",
                InferenceId=f"l{i}",
            )
            _wait_for(s3, answer["OutputLocation"])
            async_latency.append(time.perf_counter() - started)

        started = time.perf_counter()
        for _ in range(args.requests):
            runtime.invoke_endpoint(EndpointName=name, Body=body, ContentType="application/json")
        sync_rate = args.requests / (time.perf_counter() - started)
        started = time.perf_counter()
        outputs = [
            runtime.invoke_endpoint_async(
                EndpointName=name, InputLocation=uri, ContentType="application/json", InferenceId=f"t{i}"
            )["OutputLocation"]
            for i, uri in enumerate(inputs)
        ]
        for uri in outputs:
            _wait_for(s3, uri)
        async_rate = args.requests / (time.perf_counter() - started)

    sync_p50, async_p50 = statistics.median(sync_latency) * 1e3, statistics.median(async_latency) * 1e3
    print(
        f"latency p50: InvokeEndpoint {sync_p50:.2f} ms, InvokeEndpointAsync to its output {async_p50:.2f} ms"
    )
    print(f"  async / sync: {async_p50 / sync_p50:.1f}x")
    print(f"throughput: InvokeEndpoint {sync_rate:.0f}/s, InvokeEndpointAsync {async_rate:.0f}/s")
    print(f"  async / sync: {async_rate / sync_rate:.2f}x")


if __name__ == "__main__":
    main()
