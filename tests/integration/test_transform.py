"""Batch transform jobs through boto3: a trained model scores a CSV line by line, in order, split
across instances; JSON records with InputFilter, JoinSource and OutputFilter; a record the model
refuses fails the job naming the input; stop. An instance runs a model server worker per core, up
to MaxConcurrentTransforms, forked from one loaded model, and the answers still come in order."""

from __future__ import annotations

import contextlib
import gzip
import http.client
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError

from shipyard.runtime import model_server
from shipyard.server import ServerProcess, free_port
from tests._support import boto_client, tgz, wait_for
from tests.integration.test_endpoints import BUCKET, ROLE, SKLEARN_IMAGE, train_iris

FLOWERS = [[5.1, 3.5, 1.4, 0.2], [6.7, 3.0, 5.2, 2.3], [5.9, 3.0, 4.2, 1.5], [4.9, 3.0, 1.4, 0.2]]
CLASSES = [0, 2, 1, 0]

CLASSIFY = """
import json, joblib, os

def model_fn(model_dir):
    return joblib.load(os.path.join(model_dir, "model.joblib"))

def transform_fn(model, body, content_type, accept):
    rows = [json.loads(line) for line in body.decode().splitlines() if line.strip()]
    if any(r == ["refuse"] for r in rows):
        raise ValueError("this model refuses to classify 'refuse'")
    classes = model.predict([[float(v) for v in r] for r in rows])
    return "".join(json.dumps({"class": int(c)}) + "\\n" for c in classes), "application/json"
"""

# Which process loaded the model, and which one answered each record.
PIDS = """
import os

def model_fn(model_dir):
    return os.getpid()

def transform_fn(model, body, content_type, accept):
    rows = [r for r in body.decode().splitlines() if r.strip()]
    return "".join(f"{r},{model},{os.getpid()}\\n" for r in rows), "text/csv"
"""


@pytest.fixture(scope="module")
def clients(server: ServerProcess) -> tuple[Any, Any]:
    s3 = boto_client("s3", server.url)
    with contextlib.suppress(ClientError):
        s3.create_bucket(Bucket=BUCKET)
    return boto_client("sagemaker", server.url), s3


@pytest.fixture(scope="module")
def models(clients: tuple[Any, Any]) -> dict[str, str]:
    """Two models of one trained iris classifier: default handlers, and a JSON-lines script."""
    sm, s3 = clients
    data = train_iris(sm, s3)
    names = {"default": f"iris-{uuid.uuid4().hex[:6]}", "script": f"iris-script-{uuid.uuid4().hex[:6]}"}
    sm.create_model(
        ModelName=names["default"],
        ExecutionRoleArn=ROLE,
        PrimaryContainer={"Image": SKLEARN_IMAGE, "ModelDataUrl": data},
    )
    key = f"transform-code/{names['script']}/sourcedir.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=tgz({"inference.py": CLASSIFY}))
    sm.create_model(
        ModelName=names["script"],
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": SKLEARN_IMAGE,
            "ModelDataUrl": data,
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{BUCKET}/{key}",
            },
        },
    )
    return names


def _transform(sm: Any, model: str, source: str, destination: str, **kw: Any) -> str:
    name = f"tr-{uuid.uuid4().hex[:10]}"
    request: dict[str, Any] = {
        "TransformJobName": name,
        "ModelName": model,
        "TransformInput": {
            "DataSource": {"S3DataSource": {"S3DataType": "S3Prefix", "S3Uri": source}},
            "ContentType": kw.pop("content_type", "text/csv"),
            "SplitType": "Line",
            **kw.pop("input", {}),
        },
        "TransformOutput": {"S3OutputPath": destination, "AssembleWith": "Line", **kw.pop("output", {})},
        "TransformResources": {"InstanceType": "ml.m5.large", "InstanceCount": kw.pop("count", 1)},
        **kw,
    }
    sm.create_transform_job(**request)
    return name


def _wait(sm: Any, name: str, timeout: float = 120) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while (job := sm.describe_transform_job(TransformJobName=name))["TransformJobStatus"] in (
        "InProgress",
        "Stopping",
    ):
        assert time.monotonic() < deadline, f"{name} still running"
        time.sleep(0.05)
    return job  # type: ignore[no-any-return]


def _read(s3: Any, key: str) -> list[str]:
    return s3.get_object(Bucket=BUCKET, Key=key)["Body"].read().decode().splitlines()


def test_csv_lines_in_order_across_instances_and_batches(
    clients: tuple[Any, Any], models: dict[str, str]
) -> None:
    sm, s3 = clients
    prefix = f"batch/{uuid.uuid4().hex[:6]}"
    rows = [FLOWERS[i % 4] for i in range(400)]
    for part in range(3):  # three files for two instances; one gzipped
        body = "".join(",".join(map(str, r)) + "\n" for r in rows[part::3]).encode()
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/in/part-{part}.csv", Body=body)
    out = f"s3://{BUCKET}/{prefix}/out"
    name = _transform(
        sm,
        models["default"],
        f"s3://{BUCKET}/{prefix}/in/",
        out,
        count=2,
        BatchStrategy="MultiRecord",
        MaxPayloadInMB=1,
        MaxConcurrentTransforms=2,
        output={"Accept": "text/csv"},
    )
    job = _wait(sm, name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    for part in range(3):
        got = _read(s3, f"{prefix}/out/part-{part}.csv.out")
        assert got == [str(CLASSES[i % 4]) for i in range(400)][part::3]  # one answer per line, in order
    assert [
        j["TransformJobName"] for j in sm.list_transform_jobs(NameContains=name)["TransformJobSummaries"]
    ] == [name]

    gz = f"batch/{uuid.uuid4().hex[:6]}"
    s3.put_object(
        Bucket=BUCKET,
        Key=f"{gz}/in/flowers.csv.gz",
        Body=gzip.compress(b"5.1,3.5,1.4,0.2\n6.7,3.0,5.2,2.3\n"),
    )
    name = _transform(
        sm,
        models["default"],
        f"s3://{BUCKET}/{gz}/in/",
        f"s3://{BUCKET}/{gz}/out",
        input={"CompressionType": "Gzip"},
        BatchStrategy="SingleRecord",
        output={"Accept": "text/csv"},
    )
    assert _wait(sm, name)["TransformJobStatus"] == "Completed"
    assert _read(s3, f"{gz}/out/flowers.csv.gz.out") == ["0", "2"]


def test_input_filter_join_and_output_filter(clients: tuple[Any, Any], models: dict[str, str]) -> None:
    sm, s3 = clients
    prefix = f"joined/{uuid.uuid4().hex[:6]}"
    lines = [json.dumps({"id": f"f{i}", "features": FLOWERS[i]}) for i in range(4)]
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/in/flowers.jsonl", Body="\n".join(lines).encode() + b"\n")
    name = _transform(
        sm,
        models["script"],
        f"s3://{BUCKET}/{prefix}/in/",
        f"s3://{BUCKET}/{prefix}/out",
        content_type="application/json",
        BatchStrategy="MultiRecord",
        DataProcessing={
            "InputFilter": "$.features",
            "JoinSource": "Input",
            "OutputFilter": "$['id','SageMakerOutput']",
        },
    )
    job = _wait(sm, name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    got = [json.loads(line) for line in _read(s3, f"{prefix}/out/flowers.jsonl.out")]
    assert got == [{"id": f"f{i}", "SageMakerOutput": {"class": CLASSES[i]}} for i in range(4)]

    csv = f"joined/{uuid.uuid4().hex[:6]}"
    s3.put_object(Bucket=BUCKET, Key=f"{csv}/in/rows.csv", Body=b"a,5.1,3.5,1.4,0.2\nb,6.7,3.0,5.2,2.3\n")
    name = _transform(
        sm,
        models["default"],
        f"s3://{BUCKET}/{csv}/in/",
        f"s3://{BUCKET}/{csv}/out",
        BatchStrategy="MultiRecord",
        output={"Accept": "text/csv"},
        DataProcessing={"InputFilter": "$[1:]", "JoinSource": "Input", "OutputFilter": "$[0,-1]"},
    )
    job = _wait(sm, name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    assert _read(s3, f"{csv}/out/rows.csv.out") == ["a,0", "b,2"]  # the id and the prediction


def test_a_refused_record_fails_the_job_naming_it_and_stop(
    clients: tuple[Any, Any], models: dict[str, str]
) -> None:
    sm, s3 = clients
    prefix = f"refused/{uuid.uuid4().hex[:6]}"
    body = "\n".join(json.dumps(r) for r in [FLOWERS[0], FLOWERS[1], ["refuse"], FLOWERS[2]]) + "\n"
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/in/mixed.jsonl", Body=body.encode())
    name = _transform(
        sm,
        models["script"],
        f"s3://{BUCKET}/{prefix}/in/",
        f"s3://{BUCKET}/{prefix}/out",
        content_type="application/json",
        BatchStrategy="SingleRecord",
        ModelClientConfig={"InvocationsMaxRetries": 0, "InvocationsTimeoutInSeconds": 30},
    )
    job = _wait(sm, name)
    assert job["TransformJobStatus"] == "Failed"
    assert (
        f"s3://{BUCKET}/{prefix}/in/mixed.jsonl" in job["FailureReason"]
        and "record 3" in job["FailureReason"]
    )
    assert "refuses to classify" in job["FailureReason"]

    with pytest.raises(ClientError, match="Could not find model"):
        _transform(sm, "no-such-model", f"s3://{BUCKET}/{prefix}/in/", f"s3://{BUCKET}/{prefix}/out")
    with pytest.raises(ClientError, match="not a JSONPath"):
        _transform(
            sm,
            models["default"],
            f"s3://{BUCKET}/{prefix}/in/",
            f"s3://{BUCKET}/{prefix}/out",
            DataProcessing={"InputFilter": "$..x"},
        )


def test_a_manifest_names_the_inputs(clients: tuple[Any, Any], models: dict[str, str]) -> None:
    sm, s3 = clients
    prefix = f"manifest/{uuid.uuid4().hex[:6]}"
    for name, row in (("a.csv", FLOWERS[0]), ("b.csv", FLOWERS[1]), ("skipped.csv", FLOWERS[2])):
        s3.put_object(Bucket=BUCKET, Key=f"{prefix}/in/{name}", Body=",".join(map(str, row)).encode() + b"\n")
    manifest = [{"prefix": f"s3://{BUCKET}/{prefix}/in/"}, "a.csv", "b.csv"]
    s3.put_object(Bucket=BUCKET, Key=f"{prefix}/inputs.manifest", Body=json.dumps(manifest).encode())
    name = _transform(
        sm,
        models["default"],
        f"s3://{BUCKET}/{prefix}/inputs.manifest",
        f"s3://{BUCKET}/{prefix}/out",
        input={
            "DataSource": {
                "S3DataSource": {
                    "S3DataType": "ManifestFile",
                    "S3Uri": f"s3://{BUCKET}/{prefix}/inputs.manifest",
                }
            }
        },
        output={"Accept": "text/csv"},
    )
    job = _wait(sm, name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    outputs = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=BUCKET, Prefix=f"{prefix}/out/")["Contents"])
    assert outputs == [f"{prefix}/out/a.csv.out", f"{prefix}/out/b.csv.out"]
    assert _read(s3, f"{prefix}/out/b.csv.out") == ["2"]


@pytest.mark.parametrize("concurrent", [1, 2])
def test_workers_per_core_up_to_max_concurrent_transforms_answer_in_order(
    clients: tuple[Any, Any], models: dict[str, str], concurrent: int
) -> None:
    sm, s3 = clients
    prefix = f"workers/{uuid.uuid4().hex[:6]}"
    key = f"{prefix}/sourcedir.tar.gz"
    s3.put_object(Bucket=BUCKET, Key=key, Body=tgz({"inference.py": PIDS}))
    model = f"pids-{uuid.uuid4().hex[:6]}"
    data = sm.describe_model(ModelName=models["default"])["PrimaryContainer"]["ModelDataUrl"]
    sm.create_model(
        ModelName=model,
        ExecutionRoleArn=ROLE,
        PrimaryContainer={
            "Image": SKLEARN_IMAGE,
            "ModelDataUrl": data,
            "Environment": {
                "SAGEMAKER_PROGRAM": "inference.py",
                "SAGEMAKER_SUBMIT_DIRECTORY": f"s3://{BUCKET}/{key}",
            },
        },
    )
    s3.put_object(
        Bucket=BUCKET, Key=f"{prefix}/in/ids.csv", Body="".join(f"{i}\n" for i in range(120)).encode()
    )
    name = _transform(
        sm,
        model,
        f"s3://{BUCKET}/{prefix}/in/",
        f"s3://{BUCKET}/{prefix}/out",
        BatchStrategy="SingleRecord",
        MaxConcurrentTransforms=concurrent,
        output={"Accept": "text/csv"},
    )
    job = _wait(sm, name)
    assert job["TransformJobStatus"] == "Completed", job.get("FailureReason")
    rows = [line.split(",") for line in _read(s3, f"{prefix}/out/ids.csv.out")]
    assert [int(r[0]) for r in rows] == list(range(120))  # in input order, whichever worker answered
    assert len({r[1] for r in rows}) == 1  # the model was loaded once, then the workers forked
    # ml.m5.large has 2 vCPUs: one worker each, but never more than requests in flight
    assert len({r[2] for r in rows}) == min(concurrent, os.cpu_count() or 1)


def test_a_model_server_with_several_ports_loads_once_and_forks_a_worker_each(tmp_path: Path) -> None:
    (tmp_path / "inference.py").write_text(PIDS)
    ports = [free_port(), free_port()]
    while ports[1] == ports[0]:
        ports[1] = free_port()
    command = [
        sys.executable,
        model_server.__file__,
        "--model-dir",
        str(tmp_path),
        "--code-dir",
        str(tmp_path),
    ]
    command += ["--program", "inference.py", "--port", ",".join(map(str, ports))]

    def ask(port: int) -> tuple[int, bytes]:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("POST", "/invocations", b"7\n", {"Content-Type": "text/csv"})
        answer = connection.getresponse()
        return answer.status, answer.read()

    with subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True) as server:
        try:
            wait_for(lambda: _ping(ports[1]).startswith("200"), timeout=30, what="the model server")
            answers = [ask(port) for port in ports]
            assert [status for status, _ in answers] == [200, 200]
            fields = [body.decode().strip().split(",") for _, body in answers]
            assert fields[0][1] == fields[1][1] == str(server.pid)  # loaded once, by the server
            assert fields[0][2] == str(server.pid) and fields[1][2] != str(server.pid)  # a worker forked
        finally:
            os.killpg(server.pid, 9)

    (tmp_path / "inference.py").write_text(
        "def model_fn(model_dir):\n    raise ValueError('no model here')\n"
    )
    with subprocess.Popen(command, stdout=subprocess.DEVNULL, start_new_session=True) as server:
        try:
            for port in ports:  # every port says why, as the agent's health check reads it
                wait_for(
                    lambda p=port: _ping(p).startswith("503 loading the model failed"),
                    timeout=30,
                    what="the error",
                )
            assert "ValueError: no model here" in _ping(ports[1])
        finally:
            os.killpg(server.pid, 9)


def _ping(port: int) -> str:
    """The status and text of ``GET /ping`` ("" while nothing listens): a ping sent while the
    model loads waits for it."""
    try:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        connection.request("GET", "/ping")
        answer = connection.getresponse()
        return f"{answer.status} {answer.read().decode()}"
    except OSError:
        return ""
