"""What authorization adds to a request: the same signed SageMaker and S3 calls served by a server
with auth on, as a user holding 20 inline policies, against a server with auth off, both in this
process.

    .venv/bin/python benchmarks/authorization.py [--requests 5000] [--profile]

Two ``ShipyardApp`` instances (no background work) are driven through their ASGI interface,
one request at a time on one event loop, each with a data dir of its own holding the same
training job and the same object:

* auth off: requests signed with the user's key act as root (the key is not known there), so
  nothing is verified or decided;
* auth on: the key is the user's, so each request has its signature verified, is mapped to its
  IAM actions (``request_actions``) and is decided against the user's 20 policies (a mix of
  Allow and Deny, action wildcards, S3 prefixes, a condition); the user's principal comes from
  the identity service's cache, as on a busy server (a miss every ``cache_seconds``).

Each request is signed once by botocore (the client's work is not timed) and replayed; the time
is the app's, from the ASGI call to the last byte sent. Requests alternate between the two apps,
so a slow moment hits both. Reported per request kind: p50 and p99 of each, and what auth adds
(the difference), in µs. ``--profile`` prints where the auth-on requests spend their time.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import datetime as dt
import json
import pstats
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from botocore.auth import S3SigV4Auth, SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from shipyard.api.app import ShipyardApp
from shipyard.config import Settings
from shipyard.core.identity import HolderKind
from shipyard.core.jobs import Job, JobState
from shipyard.core.training import TrainingJobSpec
from shipyard.store import TrainingJobRepository

IMAGE = "683313688378.dkr.ecr.us-east-1.amazonaws.com/sagemaker-scikit-learn:1.2-1-cpu-py3"
REGION = "us-east-1"
ACCOUNT = "000000000000"
BUCKET = "lab-data"
KEY = "users/bench/train/part-0000.csv"
JOB = "bench-job-0001"
HOST = "127.0.0.1:8300"


def policies() -> list[dict[str, Any]]:
    """20 inline policies as a lab would write them: what the user may do, what no one may."""
    sm = f"arn:aws:sagemaker:{REGION}:{ACCOUNT}"

    def doc(*statements: dict[str, Any]) -> dict[str, Any]:
        return {"Version": "2012-10-17", "Statement": list(statements)}

    def allow(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
        return {"Effect": "Allow", "Action": action, "Resource": resource, **extra}

    def deny(action: Any, resource: Any, **extra: Any) -> dict[str, Any]:
        return {"Effect": "Deny", "Action": action, "Resource": resource, **extra}

    return [
        doc(deny(["sagemaker:Delete*", "sagemaker:StopPipelineExecution"], f"{sm}:*/prod-*")),
        doc(deny("s3:DeleteBucket", "arn:aws:s3:::*")),
        doc(deny(["s3:PutObject", "s3:DeleteObject"], f"arn:aws:s3:::{BUCKET}/shared/datasets/*")),
        doc(deny("iam:*", "*"), deny("sts:AssumeRole", "*")),
        doc(deny("sagemaker:CreateEndpoint*", f"{sm}:endpoint*/gpu-*")),
        doc(
            allow(
                "s3:ListBucket",
                f"arn:aws:s3:::{BUCKET}",
                Condition={"StringLike": {"s3:prefix": "users/bench/*"}},
            )
        ),
        doc(*(allow(["s3:GetObject", "s3:PutObject"], f"arn:aws:s3:::scratch-{i}/*") for i in range(3))),
        doc(allow("s3:GetObject", f"arn:aws:s3:::{BUCKET}/shared/*")),
        doc(
            allow(
                ["logs:Describe*", "logs:Get*", "logs:FilterLogEvents"], f"arn:aws:logs:{REGION}:{ACCOUNT}:*"
            )
        ),
        doc(allow("cloudwatch:GetMetric*", "*"), allow("cloudwatch:ListMetrics", "*")),
        doc(
            allow(["sagemaker:CreateTrainingJob", "sagemaker:StopTrainingJob"], f"{sm}:training-job/bench-*")
        ),
        doc(allow("sagemaker:*HyperParameterTuningJob*", f"{sm}:hyper-parameter-tuning-job/bench-*")),
        doc(allow(["sagemaker:CreateModel", "sagemaker:DescribeModel"], f"{sm}:model/bench-*")),
        doc(allow("sagemaker:InvokeEndpoint", f"{sm}:endpoint/bench-*")),
        doc(allow("sagemaker:List*", "*"), allow("sagemaker:Search", "*")),
        doc(allow("iam:PassRole", f"arn:aws:iam::{ACCOUNT}:role/ShipyardExecutionRole")),
        doc(allow("s3:GetBucketLocation", "arn:aws:s3:::*")),
        doc(allow(["sagemaker:Describe*Job", "sagemaker:ListTags"], f"{sm}:*-job/bench-*")),
        doc(allow("s3:*Object*", f"arn:aws:s3:::{BUCKET}/users/bench/*")),
        doc(
            allow(
                ["sagemaker:DescribePipeline*", "sagemaker:ListPipelineExecutionSteps"],
                f"{sm}:pipeline/bench-*",
            )
        ),
    ]


def _job() -> Job[TrainingJobSpec]:
    request = {
        "TrainingJobName": JOB,
        "RoleArn": f"arn:aws:iam::{ACCOUNT}:role/ShipyardExecutionRole",
        "AlgorithmSpecification": {"TrainingImage": IMAGE, "TrainingInputMode": "File"},
        "HyperParameters": {"sagemaker_program": '"train.py"'},
        "OutputDataConfig": {"S3OutputPath": f"s3://{BUCKET}/users/bench/output"},
        "ResourceConfig": {"InstanceType": "ml.m5.large", "InstanceCount": 1, "VolumeSizeInGB": 1},
        "StoppingCondition": {"MaxRuntimeInSeconds": 60},
    }
    now = dt.datetime.now(dt.UTC)
    return Job(
        TrainingJobSpec.from_request(request),
        f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/{JOB}",
        now,
        JobState.new(now),
    )


async def open_app(data_dir: Path, *, auth: str) -> ShipyardApp:
    app = ShipyardApp(
        Settings(data_dir=data_dir, auth=auth, account_id=ACCOUNT, region=REGION), background=False
    )
    await app.startup()
    platform = app.platform
    assert platform is not None
    TrainingJobRepository(platform.db).create(_job())
    platform.objects.create_bucket(BUCKET)
    platform.objects.put_object(BUCKET, KEY, b"survived,pclass,sex,age\n" * 40)
    return app


def make_user(app: ShipyardApp) -> Credentials:
    identity = app.platform.identity  # type: ignore[union-attr]
    identity.create_user("bench")
    key = identity.create_key("bench")
    for index, document in enumerate(policies(), 1):
        identity.put_policy(HolderKind.USER, "bench", f"policy-{index:02d}", json.dumps(document))
    return Credentials(key.access_key_id, key.secret_access_key)


Signed = tuple[str, str, str, list[tuple[bytes, bytes]], bytes]  # method, path, query, headers, body


def signed_requests(credentials: Credentials) -> dict[str, Signed]:
    """DescribeTrainingJob and GetObject, signed by the user as botocore signs them."""
    body = json.dumps({"TrainingJobName": JOB}).encode()
    describe = AWSRequest(
        "POST",
        f"http://{HOST}/",
        data=body,
        headers={
            "X-Amz-Target": "SageMaker.DescribeTrainingJob",
            "Content-Type": "application/x-amz-json-1.1",
            "Content-Length": str(len(body)),
        },
    )
    SigV4Auth(credentials, "sagemaker", REGION).add_auth(describe)
    get = AWSRequest("GET", f"http://{HOST}/{BUCKET}/{KEY}")
    S3SigV4Auth(credentials, "s3", REGION).add_auth(get)

    def raw(request: AWSRequest, path: str, data: bytes) -> Signed:
        headers = [(b"host", HOST.encode())]
        headers += [(k.lower().encode(), str(v).encode()) for k, v in request.headers.items()]
        return request.method, path, "", headers, data

    return {
        "SageMaker DescribeTrainingJob": raw(describe, "/", body),
        "S3 GetObject": raw(get, f"/{BUCKET}/{KEY}", b""),
    }


async def call(app: ShipyardApp, request: Signed) -> tuple[int, float]:
    """One request through the app: its status and the app's time, in µs."""
    method, path, query, headers, body = request
    status = 0
    received = False

    async def receive() -> dict[str, Any]:
        nonlocal received
        if received:
            await asyncio.sleep(3600)
            return {"type": "http.disconnect"}
        received = True
        return {"type": "http.request", "body": body, "more_body": False}

    async def send(message: dict[str, Any]) -> None:
        nonlocal status
        if message["type"] == "http.response.start":
            status = message["status"]

    scope = {
        "type": "http",
        "asgi": {"version": "3.0"},
        "http_version": "1.1",
        "method": method,
        "scheme": "http",
        "path": path,
        "raw_path": path.encode(),
        "query_string": query.encode(),
        "root_path": "",
        "headers": headers,
        "client": ("127.0.0.1", 50000),
        "server": ("127.0.0.1", 8300),
    }
    t0 = time.perf_counter()
    await app(scope, receive, send)  # type: ignore[arg-type]
    return status, (time.perf_counter() - t0) * 1e6


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


async def run(count: int, profile: bool) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        off = await open_app(Path(tmp) / "off", auth="off")
        on = await open_app(Path(tmp) / "on", auth="on")
        try:
            requests = signed_requests(make_user(on))
            for name, request in requests.items():  # both answer it, and the same
                for app in (off, on):
                    status, _ = await call(app, request)
                    assert status == 200, f"{name}: {status} from the auth-{'on' if app is on else 'off'} app"
            times: dict[tuple[str, str], list[float]] = {}
            for round_ in range(count + count // 10):  # the first tenth warms up
                for name, request in requests.items():
                    for label, app in (("off", off), ("on", on)):
                        status, took = await call(app, request)
                        assert status == 200
                        if round_ >= count // 10:
                            times.setdefault((name, label), []).append(took)
            print(
                f"authorization: {count} requests of each kind per app, a user with {len(policies())} "
                "inline policies (auth on) against auth off, in this process:"
            )
            worst = 0.0
            for name in requests:
                a, b = times[(name, "off")], times[(name, "on")]
                p50 = percentile(b, 50) - percentile(a, 50)
                p99 = percentile(b, 99) - percentile(a, 99)
                worst = max(worst, p50)
                print(
                    f"  {name:<28} off p50 {percentile(a, 50):7.1f} µs  p99 {percentile(a, 99):7.1f} µs | "
                    f"on p50 {percentile(b, 50):7.1f} µs  p99 {percentile(b, 99):7.1f} µs | "
                    f"added p50 {p50:+6.1f} µs  p99 {p99:+6.1f} µs  (ratio {statistics.median(b) / statistics.median(a):.2f})"
                )
            print(
                f"  goal: at most 50 µs added at p50: {'met' if worst <= 50 else 'MISSED'} ({worst:.1f} µs)"
            )
            if profile:
                profiler = cProfile.Profile()
                profiler.enable()
                for _ in range(count):
                    for request in requests.values():
                        await call(on, request)
                profiler.disable()
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(40)
        finally:
            await off.shutdown()
            await on.shutdown()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--requests", type=int, default=5000)
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args()
    asyncio.run(run(args.requests, args.profile))


if __name__ == "__main__":
    main()
