"""Processing jobs through boto3: SageMaker's processing layout (inputs at their local paths, config
files, outputs uploaded as objects), arguments and environment, sharding across instances,
continuous outputs, failures and stop, and logs."""

from __future__ import annotations

import contextlib
import gzip
import json
import time
import uuid
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shipyard.server import ServerProcess
from tests._support import boto_client
from tests._titanic import numeric_csv
from tests.integration.test_training import ROLE, SKLEARN_IMAGE

BUCKET = "processing-tests"

PREPARE = """
import argparse, glob, json, os, socket, sys
p = argparse.ArgumentParser()
p.add_argument("--split", type=float)
a = p.parse_args()
config = json.load(open("/opt/ml/config/resourceconfig.json"))
job = json.load(open("/opt/ml/config/processingjobconfig.json"))
rows = []
for path in sorted(glob.glob("/opt/ml/processing/input/data/**/*.csv", recursive=True)):
    lines = open(path).read().splitlines()
    rows += lines[1:] if lines and lines[0].startswith("Survived") else lines
cut = int(len(rows) * a.split)
os.makedirs("/opt/ml/processing/train", exist_ok=True)
host = config["current_host"]
open(f"/opt/ml/processing/train/{host}.csv", "w").write("\\n".join(rows[:cut]) + "\\n")
open(f"/opt/ml/processing/test/{host}.csv", "w").write("\\n".join(rows[cut:]) + "\\n")
print("host", host, "of", config["hosts"], "rows", len(rows), "job", job["ProcessingJobName"],
      "env", os.environ["STAGE"], "python", sys.executable.startswith("/") , flush=True)
"""


@pytest.fixture(scope="module")
def clients(server: ServerProcess) -> tuple[Any, Any, Any]:
    s3 = boto_client("s3", server.url)
    with contextlib.suppress(ClientError):
        s3.create_bucket(Bucket=BUCKET)
    return boto_client("sagemaker", server.url), s3, boto_client("logs", server.url)


def _code(s3: Any, script: str) -> str:
    key = f"code/{uuid.uuid4().hex}/prepare.py"
    s3.put_object(Bucket=BUCKET, Key=key, Body=script.encode())
    return f"s3://{BUCKET}/{key.rsplit('/', 1)[0]}/"


def _create(
    sm: Any, s3: Any, script: str, *, count: int = 1, extra: dict[str, Any] | None = None, **kw: Any
) -> str:
    name = f"proc-{uuid.uuid4().hex[:10]}"
    request: dict[str, Any] = {
        "ProcessingJobName": name,
        "RoleArn": ROLE,
        "AppSpecification": {
            "ImageUri": SKLEARN_IMAGE,
            "ContainerEntrypoint": ["python3", "/opt/ml/processing/input/code/prepare.py"],
            "ContainerArguments": kw.get("arguments", ["--split", "0.8"]),
        },
        "ProcessingResources": {
            "ClusterConfig": {"InstanceCount": count, "InstanceType": "ml.m5.large", "VolumeSizeInGB": 1}
        },
        "ProcessingInputs": [
            {
                "InputName": "code",
                "S3Input": {
                    "S3Uri": _code(s3, script),
                    "LocalPath": "/opt/ml/processing/input/code",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                },
            },
            *kw.get("inputs", []),
        ],
        "ProcessingOutputConfig": {"Outputs": kw.get("outputs", [])},
        "Environment": {"STAGE": "test"},
        "StoppingCondition": {"MaxRuntimeInSeconds": 120},
    }
    if not request["AppSpecification"]["ContainerArguments"]:
        del request["AppSpecification"]["ContainerArguments"]  # botocore refuses an empty list
    request.update(extra or {})
    sm.create_processing_job(**request)
    return name


def _wait(sm: Any, name: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := sm.describe_processing_job(ProcessingJobName=name))["ProcessingJobStatus"] in (
        "InProgress",
        "Stopping",
    ):
        assert time.monotonic() < deadline, f"{name} still running"
        time.sleep(0.05)
    return job  # type: ignore[no-any-return]


def _keys(s3: Any, prefix: str) -> list[str]:
    return sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=prefix).get("Contents", []))


def test_two_instances_shard_their_input_and_upload_their_outputs(clients: tuple[Any, Any, Any]) -> None:
    sm, s3, logs = clients
    rows = numeric_csv("train", header=False).decode().splitlines()
    for part in range(4):  # four files: two per instance when sharded by key
        body = "\n".join(rows[part::4]) + "\n"
        s3.put_object(Bucket=BUCKET, Key=f"raw/part-{part}.csv.gz", Body=gzip.compress(body.encode()))
    out = f"prepared/{uuid.uuid4().hex[:6]}"
    name = _create(
        sm,
        s3,
        PREPARE,
        count=2,
        inputs=[
            {
                "InputName": "data",
                "S3Input": {
                    "S3Uri": f"s3://{BUCKET}/raw/",
                    "LocalPath": "/opt/ml/processing/input/data",
                    "S3DataType": "S3Prefix",
                    "S3InputMode": "File",
                    "S3DataDistributionType": "ShardedByS3Key",
                    "S3CompressionType": "Gzip",
                },
            }
        ],
        outputs=[
            {
                "OutputName": split,
                "S3Output": {
                    "S3Uri": f"s3://{BUCKET}/{out}/{split}",
                    "LocalPath": f"/opt/ml/processing/{split}",
                    "S3UploadMode": "EndOfJob",
                },
            }
            for split in ("train", "test")
        ],
    )
    job = _wait(sm, name)
    assert job["ProcessingJobStatus"] == "Completed", job.get("FailureReason")
    assert job["ExitMessage"] == "Exit code 0"
    assert job["ProcessingStartTime"] <= job["ProcessingEndTime"]
    assert _keys(s3, f"{out}/train/") == [f"{out}/train/algo-1.csv", f"{out}/train/algo-2.csv"]
    assert _keys(s3, f"{out}/test/") == [f"{out}/test/algo-1.csv", f"{out}/test/algo-2.csv"]
    total = 0
    for split in ("train", "test"):
        for host in ("algo-1", "algo-2"):
            text = s3.get_object(Bucket=BUCKET, Key=f"{out}/{split}/{host}.csv")["Body"].read().decode()
            total += len([line for line in text.splitlines() if line])
    assert total == len(rows)  # every row once: the shards do not overlap
    events = logs.filter_log_events(
        logGroupName="/aws/sagemaker/ProcessingJobs", logStreamNamePrefix=f"{name}/"
    )
    lines = [e["message"] for e in events["events"] if e["message"].startswith("host ")]
    assert sorted(line.split()[1] for line in lines) == ["algo-1", "algo-2"]
    assert all(
        "['algo-1', 'algo-2']" in line and f"job {name}" in line and "env test" in line for line in lines
    )
    listed = sm.list_processing_jobs(NameContains=name)["ProcessingJobSummaries"]
    assert [j["ProcessingJobName"] for j in listed] == [name]
    from decimal import Decimal

    import httpx

    cost = httpx.get(f"{sm.meta.endpoint_url}/api/v1/processing-jobs/{name}").json()
    # Two instances for at least a second each, at the processing price of ml.m5.large.
    assert cost["billable_seconds"] >= 2
    assert Decimal(cost["cost_usd"]) == (Decimal("0.115") * cost["billable_seconds"] / 3600).quantize(
        Decimal("0.000001")
    )


def test_continuous_outputs_failures_and_stop(clients: tuple[Any, Any, Any]) -> None:
    sm, s3, _ = clients
    out = f"continuous/{uuid.uuid4().hex[:6]}"
    script = """
import os, time
os.makedirs("/opt/ml/processing/progress", exist_ok=True)
open("/opt/ml/processing/progress/step-1.txt", "w").write("one")
while not os.path.exists("/opt/ml/processing/input/code/never"):
    time.sleep(0.05)
"""
    name = _create(
        sm,
        s3,
        script,
        arguments=[],
        outputs=[
            {
                "OutputName": "progress",
                "S3Output": {
                    "S3Uri": f"s3://{BUCKET}/{out}",
                    "LocalPath": "/opt/ml/processing/progress",
                    "S3UploadMode": "Continuous",
                },
            }
        ],
    )
    deadline = time.monotonic() + 60
    while _keys(s3, out) != [f"{out}/step-1.txt"]:  # uploaded while the job still runs
        assert time.monotonic() < deadline, "the continuous output never appeared"
        assert sm.describe_processing_job(ProcessingJobName=name)["ProcessingJobStatus"] == "InProgress"
        time.sleep(0.05)
    sm.stop_processing_job(ProcessingJobName=name)
    assert _wait(sm, name)["ProcessingJobStatus"] == "Stopped"
    with pytest.raises(ClientError, match="cannot be stopped"):
        sm.stop_processing_job(ProcessingJobName=name)

    failing = _create(sm, s3, "raise SystemExit('no data today')", arguments=[])
    job = _wait(sm, failing)
    assert job["ProcessingJobStatus"] == "Failed"
    assert "no data today" in job["FailureReason"] and job["ExitMessage"] == "Exit code 1"


def test_bad_processing_requests_name_the_field(clients: tuple[Any, Any, Any]) -> None:
    sm, s3, _ = clients
    bad_path = [
        {
            "InputName": "x",
            "S3Input": {
                "S3Uri": f"s3://{BUCKET}/raw/",
                "LocalPath": "/etc/x",
                "S3DataType": "S3Prefix",
                "S3InputMode": "File",
            },
        }
    ]
    with pytest.raises(ClientError, match="must be a path under /opt/ml/processing/"):
        _create(sm, s3, "", inputs=bad_path)
    with pytest.raises(ClientError, match="ContainerEntrypoint is required"):
        _create(sm, s3, "", extra={"AppSpecification": {"ImageUri": SKLEARN_IMAGE}})
    with pytest.raises(ClientError, match="Could not find requested job"):
        sm.describe_processing_job(ProcessingJobName="nope")
    name = _create(sm, s3, "print('once')", arguments=[])
    with pytest.raises(ClientError, match="already exists"):
        _create(sm, s3, "", extra={"ProcessingJobName": name})
    assert json.loads(json.dumps(_wait(sm, name)["ProcessingJobStatus"])) == "Completed"
